//! A real SMTP server for email tests: Debian's `python3-aiosmtpd`, run by `/usr/bin/python3`.
//!
//! A small handler (written next to the server at start-up) stores every accepted message as
//! one JSON file (envelope, decoded headers, text and HTML bodies, whether TLS was on), refuses
//! recipients starting with `refuse` with a 550 and defers those starting with `later` with a
//! 451. STARTTLS uses a throwaway CA and a `127.0.0.1` certificate made with `openssl`. A
//! missing python, aiosmtpd or openssl fails the test loudly; nothing here skips.
//!
//! The same script starts the server (aiosmtpd's own SMTP class on an asyncio server, as
//! `python3 -m aiosmtpd -n` does) on port 0 and writes the port it got to a file; a restart
//! binds that port again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

const HANDLER: &str = r#"
import asyncio, base64, email, email.policy, json, logging, os, ssl, sys, time
from functools import partial

class JsonDrop:
    def __init__(self, outdir):
        self.outdir = outdir
        os.makedirs(outdir, exist_ok=True)

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("JsonDrop needs an output directory")
        return cls(args[0])

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refuse"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if address.startswith("later"):
            return "451 4.3.0 <%s>: Temporary lookup failure" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        name = "%020d-%d.json" % (time.time_ns(), os.getpid())
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k: str(v) for k, v in msg.items()},
            "text": text.get_content() if text is not None else "",
            "html": html.get_content() if html is not None else "",
            "tls": getattr(session, "ssl", None) is not None,
            "queued_as": name,
            "attachments": [
                {
                    "filename": part.get_filename() or "",
                    "content_type": part.get_content_type(),
                    "base64": base64.b64encode(part.get_payload(decode=True) or b"").decode(),
                }
                for part in msg.iter_attachments()
            ],
        }
        tmp = os.path.join(self.outdir, "." + name)
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.outdir, name))
        return "250 2.0.0 Ok: queued as %s" % name


def main():
    # caretaker_smtp.py OUTDIR PORT PORT_FILE [CERT KEY]: PORT 0 picks a free one.
    from aiosmtpd.smtp import SMTP
    outdir, port, port_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    tls = None
    if len(sys.argv) == 6:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.check_hostname = False
        tls.load_cert_chain(sys.argv[4], sys.argv[5])
    logging.basicConfig(level=logging.ERROR)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    factory = partial(SMTP, JsonDrop(outdir), tls_context=tls, require_starttls=tls is not None)
    server = loop.run_until_complete(loop.create_server(factory, host="127.0.0.1", port=port))
    bound = server.sockets[0].getsockname()[1]
    with open(port_file + ".partial", "w") as f:
        f.write("%d\n" % bound)
    os.rename(port_file + ".partial", port_file)
    loop.run_forever()


if __name__ == "__main__":
    main()
"#;

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub rcpt_tos: Vec<String>,
    pub headers: BTreeMap<String, String>,
    pub text: String,
    pub html: String,
    pub tls: bool,
    /// `(filename, content type, bytes)` of each attachment.
    pub attachments: Vec<(String, String, Vec<u8>)>,
}

impl ReceivedMail {
    /// A header by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn subject(&self) -> &str {
        self.header("Subject").unwrap_or("")
    }

    pub fn message_id(&self) -> &str {
        self.header("Message-ID").unwrap_or("")
    }
}

/// Files for STARTTLS: the CA that signed the server's certificate.
pub struct TestCertificate {
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

/// A throwaway CA and a server certificate for `127.0.0.1` (and `localhost`), in `dir`.
pub fn make_certificate(dir: &Path) -> TestCertificate {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("openssl is needed for the STARTTLS test: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write leaf.ext");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Caretaker Test School CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    TestCertificate {
        ca_pem: dir.join("ca.pem"),
        cert_pem: dir.join("server.pem"),
        key_pem: dir.join("server.key"),
    }
}

/// A running aiosmtpd on `127.0.0.1:port`; killed on drop.
pub struct SmtpServer {
    pub port: u16,
    dir: PathBuf,
    drop_dir: PathBuf,
    tls: Option<(PathBuf, PathBuf)>,
    child: Option<Child>,
    /// Run inside this network namespace (a lab's scanner), listening on its loopback.
    netns: Option<String>,
}

impl SmtpServer {
    /// Plain SMTP (no STARTTLS offered), messages dropped under `dir`.
    pub fn start(dir: &Path) -> Self {
        Self::start_on(dir, None)
    }

    /// With STARTTLS required, using `cert`.
    pub fn start_tls(dir: &Path, cert: &TestCertificate) -> Self {
        Self::start_on(dir, Some((cert.cert_pem.clone(), cert.key_pem.clone())))
    }

    fn start_on(dir: &Path, tls: Option<(PathBuf, PathBuf)>) -> Self {
        assert!(
            Path::new(PYTHON).exists(),
            "{PYTHON} is missing: install python3 and python3-aiosmtpd"
        );
        std::fs::create_dir_all(dir).expect("smtp dir");
        std::fs::write(dir.join("caretaker_smtp.py"), HANDLER).expect("write handler");
        let mut server = Self {
            port: 0,
            dir: dir.to_path_buf(),
            drop_dir: dir.join("received"),
            tls,
            child: None,
            netns: None,
        };
        server.spawn();
        server
    }

    /// Plain SMTP on 127.0.0.1 inside network namespace `netns` (for a collector running in
    /// a lab's scanner namespace).
    pub fn start_in_netns(dir: &Path, netns: &str) -> Self {
        std::fs::create_dir_all(dir).expect("smtp dir");
        std::fs::write(dir.join("caretaker_smtp.py"), HANDLER).expect("write handler");
        let mut server = Self {
            port: 0,
            dir: dir.to_path_buf(),
            drop_dir: dir.join("received"),
            tls: None,
            child: None,
            netns: Some(netns.to_owned()),
        };
        server.spawn();
        server
    }

    /// Starts the server on `self.port` (0 the first time) and waits for the port file.
    fn spawn(&mut self) {
        let mut cmd = match &self.netns {
            None => Command::new(PYTHON),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, PYTHON]);
                c
            }
        };
        let port_file = self.dir.join("port");
        let _ = std::fs::remove_file(&port_file);
        cmd.arg(self.dir.join("caretaker_smtp.py"))
            .arg(&self.drop_dir)
            .arg(self.port.to_string())
            .arg(&port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.join("aiosmtpd.log"))
                    .map_or_else(|_| Stdio::null(), Stdio::from),
            );
        if let Some((cert, key)) = &self.tls {
            cmd.arg(cert).arg(key);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {PYTHON} with aiosmtpd: {e}"));
        let start = Instant::now();
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse::<u16>().ok())
            {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "aiosmtpd exited with {status} (is python3-aiosmtpd installed?): {}",
                    self.log()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "aiosmtpd did not listen within 15 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            self.port == 0 || self.port == port,
            "aiosmtpd restarted on {port}, not {}",
            self.port
        );
        self.port = port;
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("aiosmtpd.log")).unwrap_or_default()
    }

    /// Kills the server; [`restart`](Self::restart) binds the same port again.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, keeping what it received.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Everything accepted so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        let Ok(dir) = std::fs::read_dir(&self.drop_dir) else {
            return Vec::new();
        };
        let mut names: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        names.sort();
        names
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter_map(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|v| ReceivedMail {
                rcpt_tos: v["rcpt_tos"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                headers: v["headers"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                            .collect()
                    })
                    .unwrap_or_default(),
                text: v["text"].as_str().unwrap_or("").to_owned(),
                html: v["html"].as_str().unwrap_or("").to_owned(),
                tls: v["tls"].as_bool().unwrap_or(false),
                attachments: v["attachments"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                use base64::Engine as _;
                                (
                                    x["filename"].as_str().unwrap_or("").to_owned(),
                                    x["content_type"].as_str().unwrap_or("").to_owned(),
                                    base64::engine::general_purpose::STANDARD
                                        .decode(x["base64"].as_str().unwrap_or(""))
                                        .unwrap_or_default(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Waits (bounded) until at least `n` messages arrived; panics with what did arrive.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let start = Instant::now();
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < timeout,
                "expected {n} messages within {timeout:?}, got {}: {:?}",
                got.len(),
                got.iter().map(ReceivedMail::subject).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
