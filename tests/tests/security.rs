//! Security of the agent ↔ collector link with the real binaries on loopback: the token's CA
//! pin, token limits (expiry, uses), revocation, expired client certificates, plaintext and
//! certificate-less clients on the TLS port, the token's secret on the wire, and a CA
//! rotation that moves an agent over without a visit. Each refusal must be clear on both
//! sides: the agent's error says what to do, the collector's log says what it refused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use caretaker_tests::v1::HeartbeatRequest;
use caretaker_tests::v1::agent_service_client::AgentServiceClient;
use caretaker_tests::{Collector, agent, authed, bin, tls, wait_for};
use serde_json::Value;

fn cli(collector: &Collector, args: &[&str]) -> Output {
    let output = Command::new(bin("caretaker-collector"))
        .args(args)
        .arg("--config")
        .arg(&collector.config)
        .output()
        .expect("run the CLI");
    assert!(
        output.status.success(),
        "caretaker-collector {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn new_token(collector: &Collector, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    String::from_utf8(cli(collector, &all).stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// `caretaker-agent run --once` against the collector's own (TLS) port.
fn run_once(collector: &Collector, state: &Path, token: &str) -> Output {
    agent(
        &[
            "run",
            "--once",
            "--collector",
            &collector.direct_url(),
            "--enroll-token",
            token,
            "--state-dir",
            &state.display().to_string(),
        ],
        Duration::from_secs(120),
    )
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_fails_saying(output: &Output, words: &str) {
    let text = stderr(output);
    assert!(
        !output.status.success(),
        "the agent should have failed:\n{text}"
    );
    assert!(text.contains(words), "agent error lacks {words:?}:\n{text}");
}

fn wait_log(collector: &Collector, words: &str) {
    wait_for(
        Duration::from_secs(10),
        &format!("{words:?} in the collector log"),
        || collector.log().contains(words).then_some(()),
    );
}

fn token_json(token: &str) -> Value {
    let body = token.strip_prefix("ct1_").expect("a ct1_ token");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .expect("base64"),
    )
    .expect("json")
}

fn encode_token(value: &Value) -> String {
    format!(
        "ct1_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    )
}

fn identity(state: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(state.join("identity.json")).expect("identity"))
        .expect("identity json")
}

#[test]
fn a_token_pinning_another_ca_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(dir.path());
    let mut token = token_json(&new_token(&collector, &[]));
    token["fp"] = "00".repeat(32).into();
    let output = run_once(&collector, &dir.path().join("agent"), &encode_token(&token));
    assert_fails_saying(
        &output,
        "does not match the fingerprint in the enrolment token",
    );
    wait_log(&collector, "does not trust this collector's certificate");
    assert_eq!(collector.get("/assets").as_array().map(Vec::len), Some(0));
}

#[test]
fn expired_and_used_up_tokens_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(dir.path());
    let expired = new_token(&collector, &["--expires", "1s", "--label", "short"]);
    std::thread::sleep(Duration::from_millis(1500));
    let output = run_once(&collector, &dir.path().join("a1"), &expired);
    assert_fails_saying(&output, "expired at");
    assert_fails_saying(&output, "token create");
    wait_log(&collector, "(short) expired at");

    let once = new_token(&collector, &["--uses", "1", "--label", "one-pc"]);
    assert!(
        run_once(&collector, &dir.path().join("a2"), &once)
            .status
            .success()
    );
    let output = run_once(&collector, &dir.path().join("a3"), &once);
    assert_fails_saying(&output, "is used up (1 enrolments)");
    wait_log(&collector, "(one-pc) is used up");
    let list = String::from_utf8(cli(&collector, &["token", "list"]).stdout).expect("utf-8");
    assert!(
        list.contains("used up") && list.contains("expired"),
        "{list}"
    );
}

#[test]
fn a_revoked_agent_is_refused_at_once_and_does_not_enrol_itself_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(dir.path());
    let token = new_token(&collector, &[]);
    let state = dir.path().join("agent");
    assert!(run_once(&collector, &state, &token).status.success());
    let id = identity(&state)["agent_id"]
        .as_str()
        .expect("agent id")
        .to_owned();
    cli(&collector, &["agent", "revoke", &id]);
    let output = run_once(&collector, &state, &token);
    assert_fails_saying(&output, "this PC was revoked by the collector");
    wait_log(&collector, &format!("agent {id} was revoked"));
    assert_eq!(identity(&state)["agent_id"], id, "no silent re-enrolment");
}

#[test]
fn an_expired_client_certificate_is_refused_by_the_tls_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start_with(dir.path(), "[tls]\nclient_cert_lifetime = \"2s\"\n");
    let token = new_token(&collector, &["--uses", "1"]);
    let state = dir.path().join("agent");
    assert!(run_once(&collector, &state, &token).status.success());
    std::thread::sleep(Duration::from_millis(3500));
    let output = run_once(&collector, &state, &token);
    // The agent says its certificate expired, tries to enrol again, and the one-use token
    // is spent.
    assert_fails_saying(&output, "it has expired");
    assert_fails_saying(&output, "is used up");
    wait_log(&collector, "client certificate has expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_certificate_less_clients_are_told_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(dir.path());
    // An enrolled agent (through the harness, which enrols like an agent does).
    let mut client = caretaker_tests::grpc_client(&collector).await;
    let enrolled = client
        .enroll(caretaker_tests::v1::EnrollRequest {
            enroll_token: collector.enroll_token(),
            hostname: "LAB-PC01".into(),
            ..Default::default()
        })
        .await
        .expect("enrol")
        .into_inner();
    let heartbeat = || {
        authed(
            HeartbeatRequest {
                agent_id: enrolled.agent_id.clone(),
                ..Default::default()
            },
            &enrolled.agent_secret,
        )
    };

    // Plaintext straight to the TLS port.
    let mut plain = AgentServiceClient::connect(collector.direct_url())
        .await
        .expect("h2 connects");
    let refused = plain.heartbeat(heartbeat()).await.expect_err("plaintext");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused.message().contains("accepts only TLS"),
        "{refused:?}"
    );
    wait_log(&collector, "spoke plaintext to the TLS-only gRPC port");

    // TLS with the right CA but without the client certificate.
    let roots = tls::collector_cas(&collector.dir.join("data"));
    let mut bare = AgentServiceClient::new(tls::channel(
        collector.grpc,
        tls::client_config(&roots, None),
    ));
    let refused = bare
        .heartbeat(heartbeat())
        .await
        .expect_err("no certificate");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused.message().contains("needs the client certificate"),
        "{refused:?}"
    );
    wait_log(
        &collector,
        "needs the client certificate issued at enrolment",
    );

    // And the same agent with its certificate is fine.
    client.heartbeat(heartbeat()).await.expect("with mTLS");
}

/// A TCP relay recording every byte both ways.
fn recording_relay(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for downstream in listener.incoming().flatten() {
            let Ok(up) = TcpStream::connect(upstream) else {
                continue;
            };
            for (mut from, mut to) in [
                (
                    downstream.try_clone().expect("clone"),
                    up.try_clone().expect("clone"),
                ),
                (up, downstream),
            ] {
                let record = record.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        record.lock().expect("record").extend_from_slice(&buf[..n]);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    (addr, seen)
}

#[test]
fn the_tokens_secret_never_crosses_the_wire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(dir.path());
    let token = new_token(&collector, &[]);
    let secret = token_json(&token)["s"].as_str().expect("secret").to_owned();
    let (relay, seen) = recording_relay(collector.grpc);
    let output = agent(
        &[
            "run",
            "--once",
            "--collector",
            &format!("http://{relay}"),
            "--enroll-token",
            &token,
            "--state-dir",
            &dir.path().join("agent").display().to_string(),
        ],
        Duration::from_secs(120),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let bytes = seen.lock().expect("record").clone();
    assert!(
        bytes.len() > 2_000,
        "the enrolment and reports went through the relay"
    );
    let hay = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!hay(secret.as_bytes()), "the token's secret is on the wire");
    assert!(!hay(token.as_bytes()), "the token is on the wire");
    assert!(!hay(b"caretaker.v1.AgentService"), "gRPC in the clear");
    assert_eq!(collector.assets().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rotation_moves_an_agent_over_at_its_next_contact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(dir.path());
    let token = new_token(&collector, &[]);
    let moved = dir.path().join("moved");
    let run = {
        let (collector, moved, token) = (&collector, moved.clone(), token.clone());
        move || run_once(collector, &moved, &token)
    };
    assert!(run().status.success());
    let old_ca = identity(&moved)["ca_pem"].as_str().expect("ca").to_owned();
    // A second PC (played through the harness, which enrols like an agent) that will not
    // call in during the rotation.
    let mut left = caretaker_tests::grpc_client(&collector).await;
    let enrolled = left
        .enroll(caretaker_tests::v1::EnrollRequest {
            enroll_token: token.clone(),
            hostname: "AWAY-PC".into(),
            ..Default::default()
        })
        .await
        .expect("enrol")
        .into_inner();

    cli(&collector, &["ca", "rotate"]);
    // Its next contact: still trusted (the new CA is cross-signed by the old one), told to
    // renew, and renewed onto the new CA.
    let output = run();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("Renewed the client certificate"),
        "{}",
        stderr(&output)
    );
    let after = identity(&moved)["ca_pem"].as_str().expect("ca").to_owned();
    assert_eq!(
        tls::certs(&after).len(),
        2,
        "old and new CA during the rotation"
    );
    assert_ne!(after, old_ca);
    // Tokens made now pin the new CA.
    let shown = String::from_utf8(cli(&collector, &["ca", "show"]).stdout).expect("utf-8");
    let fresh = new_token(&collector, &[]);
    let fp = token_json(&fresh)["fp"].as_str().expect("fp").to_owned();
    assert_ne!(token_json(&token)["fp"].as_str(), Some(fp.as_str()));
    assert!(shown.starts_with(&fp), "{shown}");

    // A PC enrolling during the rotation with a token made before it (deployed by GPO, say)
    // still finds the pinned old CA in the chain. (It is this same machine, so it takes over
    // the asset from `moved`, as a reimaged PC does.)
    let late = dir.path().join("late");
    let output = run_once(&collector, &late, &token);
    assert!(output.status.success(), "{}", stderr(&output));

    cli(&collector, &["ca", "rotate", "--finish"]);
    let output = run_once(&collector, &late, &token);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        tls::certs(identity(&late)["ca_pem"].as_str().expect("ca")).len(),
        2
    );
    // The PC that never called in still holds a certificate of the old CA: refused now.
    let refused = left
        .heartbeat(authed(
            HeartbeatRequest {
                agent_id: enrolled.agent_id.clone(),
                ..Default::default()
            },
            &enrolled.agent_secret,
        ))
        .await
        .expect_err("old CA no longer trusted");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    // It no longer trusts the collector either (its CA bundle holds only the old CA).
    wait_log(&collector, "does not trust this collector's certificate");
}

#[test]
fn the_api_speaks_https_with_the_internal_ca_and_the_cli_follows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[grpc]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n[tls]\nhttps = true\n",
            data.display().to_string()
        ),
    )
    .expect("config");
    let mut child = Command::new(bin("caretaker-collector"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("collector");
    let listening = caretaker_tests::Listening::wait(&data, Duration::from_secs(30), || {
        child.try_wait().ok().flatten().map(|s| s.to_string())
    });
    let result = std::panic::catch_unwind(|| {
        let listening = listening.expect("listening");
        let url = format!("https://localhost:{}/api/v1/health", listening.http.port());
        let curl = |extra: &[&str]| {
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .args(extra)
                .arg(&url)
                .output()
                .expect("curl must be installed")
        };
        let ca = data.join("pki/ca.pem").display().to_string();
        let ok = curl(&["--cacert", &ca]);
        assert_eq!(String::from_utf8_lossy(&ok.stdout), "200", "{ok:?}");
        // Without the CA the certificate is not trusted; plain HTTP gets no answer.
        assert!(!curl(&[]).status.success());
        let plain = caretaker_tests::get_raw(listening.http, "/api/v1/health", None);
        assert!(plain.is_err() || plain.as_ref().is_ok_and(|(s, _)| *s != 200));
        // The CLI talks HTTPS to its daemon by itself.
        let list = Command::new(bin("caretaker-collector"))
            .args(["token", "list", "--config"])
            .arg(&config)
            .output()
            .expect("cli");
        assert!(
            list.status.success(),
            "{}",
            String::from_utf8_lossy(&list.stderr)
        );
        assert!(String::from_utf8_lossy(&list.stdout).contains("enroll-token file"));
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn https_serves_the_new_ca_s_certificate_after_a_rotation_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[grpc]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n[tls]\nhttps = true\n",
            data.display().to_string()
        ),
    )
    .expect("config");
    let mut child = Command::new(bin("caretaker-collector"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("collector");
    let listening = caretaker_tests::Listening::wait(&data, Duration::from_secs(30), || {
        child.try_wait().ok().flatten().map(|s| s.to_string())
    });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let listening = listening.expect("listening");
        let url = format!("https://localhost:{}/api/v1/health", listening.http.port());
        // Only the CA given is trusted (curl's own store is not used).
        let status_with = |ca: &Path| {
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
                .arg(ca)
                .arg(&url)
                .output()
                .expect("curl must be installed");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let old_ca = dir.path().join("old-ca.pem");
        std::fs::copy(data.join("pki/ca.pem"), &old_ca).expect("copy the CA");
        assert_eq!(status_with(&old_ca), "200");
        let rotate = Command::new(bin("caretaker-collector"))
            .args(["ca", "rotate", "--config"])
            .arg(&config)
            .output()
            .expect("cli");
        assert!(
            rotate.status.success(),
            "ca rotate: {}",
            String::from_utf8_lossy(&rotate.stderr)
        );
        let new_ca = dir.path().join("new-ca.pem");
        std::fs::copy(data.join("pki/ca.pem"), &new_ca).expect("copy the new CA");
        assert_ne!(
            std::fs::read(&old_ca).unwrap(),
            std::fs::read(&new_ca).unwrap(),
            "a new CA"
        );
        // The same process now serves a certificate the new CA issued; a browser or script
        // that trusts only the new CA connects.
        assert_eq!(
            status_with(&new_ca),
            "200",
            "HTTPS still serves the old CA's certificate after ca rotate"
        );
        assert!(child.try_wait().expect("wait").is_none(), "not restarted");
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn a_reimaged_pc_enrols_again_as_the_same_asset_and_its_old_certificate_is_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(dir.path());
    let token = new_token(&collector, &[]);
    let state = dir.path().join("agent");
    assert!(run_once(&collector, &state, &token).status.success());
    let old = std::fs::read(state.join("identity.json")).expect("identity");
    // Reimage: the state directory is gone, a new key is made, the PC enrols again.
    std::fs::remove_dir_all(&state).expect("wipe");
    assert!(run_once(&collector, &state, &token).status.success());
    assert_eq!(collector.assets().len(), 1, "one PC, one asset");
    let new_id = identity(&state)["agent_id"]
        .as_str()
        .expect("id")
        .to_owned();
    // The old identity (say, from a backup of the old image) is refused now.
    let aside = dir.path().join("old-image");
    std::fs::create_dir_all(&aside).expect("dir");
    std::fs::write(aside.join("identity.json"), old).expect("restore");
    let output = run_once(&collector, &aside, &token);
    assert_fails_saying(&output, &format!("the PC enrolled again as agent {new_id}"));
    wait_log(&collector, "the old agents' certificates revoked");
}

#[test]
fn an_incident_warns_before_an_agent_certificate_or_the_ca_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Certificates for 1 hour, a CA for 10 days, warnings 30 days ahead: both warn.
    let collector = Collector::start_with(
        dir.path(),
        "[tls]\nclient_cert_lifetime = \"1h\"\nca_lifetime = \"10d\"\nwarn_before = \"30d\"\n\
         [incidents]\nhold_down = \"1s\"\nevaluate_every = \"1s\"\n",
    );
    let token = new_token(&collector, &[]);
    assert!(
        run_once(&collector, &dir.path().join("agent"), &token)
            .status
            .success()
    );
    let asset = collector.assets()[0]["id"].as_str().expect("id").to_owned();
    let incidents = wait_for(Duration::from_secs(20), "certificate incidents", || {
        let list = collector.get("/incidents");
        let list = list.as_array().cloned().unwrap_or_default();
        let rule = |i: &&Value| i["rule"] == "certificate_expiry";
        (list.iter().filter(rule).count() >= 2).then_some(list)
    });
    let cert = incidents
        .iter()
        .find(|i| i["rule"] == "certificate_expiry" && i["asset_id"] == asset.as_str())
        .expect("an incident on the PC's asset");
    assert!(
        cert["title"]
            .as_str()
            .expect("title")
            .contains("certificate expires in"),
        "{cert}"
    );
    let ca = incidents
        .iter()
        .find(|i| i["rule"] == "certificate_expiry" && i["asset_id"] == "collector")
        .expect("an incident for the CA");
    assert!(
        ca["description"]
            .as_str()
            .expect("text")
            .contains("ca rotate"),
        "{ca}"
    );
}
