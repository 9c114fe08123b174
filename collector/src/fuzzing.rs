//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): each hands untrusted bytes to
//! the very code the daemon runs on them, and checks what must hold for any input.
//!
//! Parsers of untrusted bytes today: an agent's Submit (`wire`), SNMP responses and the
//! tables assembled from walks (`scan::snmp`), ICMP and ARP replies (`scan::icmp`,
//! `scan::arp`), the config file (`config`), the JSON API's requests (`http`), and the staff
//! form `/report` (`web::report`: axum's form decoding, the field checks, the device
//! picker), and an uploaded asset CSV (`csv::import`). The agent's journal reader has its target in the agent crate's public API. Nothing here runs
//! in the daemon; it is compiled in normal builds so it cannot rot.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use crate::scan::snmp::tables::{self, Walked, oids};
use crate::scan::snmp::value::{self, OidVec, Val};

/// A Submit body as ingest decodes and checks it. Either it is refused with
/// INVALID_ARGUMENT, or every report in it is within the bounds.
pub fn submit(bytes: &[u8]) {
    match crate::wire::decode_submit(bytes) {
        Ok(request) => {
            assert!(!request.reports.is_empty());
            assert!(request.reports.len() <= crate::wire::MAX_REPORTS_PER_SUBMIT);
        }
        Err(status) => assert_eq!(status.code(), tonic::Code::InvalidArgument),
    }
}

/// A config file's bytes, parsed and validated. Every refusal names at least one position.
pub fn config(bytes: &[u8]) {
    if let Err(crate::config::ConfigError::Invalid(issues)) =
        crate::config::parse_bytes(Path::new("fuzz.toml"), bytes)
    {
        assert!(!issues.is_empty());
        assert!(issues.iter().all(|i| i.line >= 1 && i.column >= 1));
    }
}

/// Every table root the SNMP inventory walks.
const ROOTS: &[&[u64]] = &[
    oids::IF_TABLE_ENTRY,
    oids::IF_X_ENTRY,
    oids::ENT_PHYSICAL_ENTRY,
    oids::HR_STORAGE_ENTRY,
    oids::HR_STORAGE_TYPES,
    oids::HR_DEVICE_ENTRY,
    oids::HR_DEVICE_PRINTER,
    oids::HR_PROCESSOR_LOAD,
    oids::HR_PRINTER_ERROR_STATE,
    oids::HR_SW_INSTALLED_NAME,
    oids::PRT_SUPPLIES_ENTRY,
    oids::PRT_COLORANT_VALUE,
    oids::PRT_MARKER_LIFE_COUNT,
    oids::DOT1D_BASE_PORT_IFINDEX,
    oids::DOT1D_TP_FDB_PORT,
    oids::DOT1Q_TP_FDB_PORT,
    oids::LLDP_REM_ENTRY,
    oids::LLDP_REM_MAN_ADDR_IF_SUBTYPE,
    oids::UPS_MIB,
    oids::APC_UPS,
];

/// Files varbinds under every table they could belong to: as rows of a column (`root`) and
/// as rows of an entry's column (`root.column`), the two shapes `tables` reads.
fn walked(varbinds: &[(OidVec, Val)]) -> Walked {
    let mut walked = Walked::default();
    for (oid, val) in varbinds {
        for root in ROOTS {
            if oid.len() > root.len() && oid.starts_with(root) {
                walked
                    .0
                    .entry(root.to_vec())
                    .or_default()
                    .push((oid[root.len()..].to_vec(), val.clone()));
                walked
                    .0
                    .entry(oid[..=root.len()].to_vec())
                    .or_default()
                    .push((oid[root.len() + 1..].to_vec(), val.clone()));
            }
        }
    }
    walked
}

/// Everything the inventory assembles from walked tables, and the value accessors.
fn assemble(walked: &Walked, values: &[Val]) {
    let _ = tables::interfaces(walked);
    let _ = tables::entities(walked);
    let _ = tables::storage(walked);
    let _ = tables::processor_loads(walked);
    let _ = tables::software(walked);
    let _ = tables::printer_device_descr(walked);
    let _ = tables::supplies(walked);
    let _ = tables::page_count(walked);
    let _ = tables::printer_errors(walked);
    let _ = tables::fdb(walked);
    let _ = tables::lldp(walked);
    let _ = tables::ups_from(values);
    for v in values {
        let _ = (
            value::text(v),
            value::display(v),
            value::mac(v),
            value::int(v),
        );
        let _ = (value::uint(v), value::oid_string(v), value::ipv4(v));
        if let Val::Str(bytes) = v {
            let _ = tables::printer_error_bits(bytes);
            if let Ok(text) = std::str::from_utf8(bytes) {
                let _ = value::parse_dotted(text);
            }
        }
    }
    let text = |i: usize| values.get(i).and_then(value::text).unwrap_or_default();
    let object_id = values
        .get(1)
        .and_then(value::oid_string)
        .unwrap_or_default();
    let _ = crate::scan::snmp::classify::classify(&object_id, &text(0), &Default::default());
}

/// An SNMP message as the collector receives it: the probe burst's decoder, then the
/// session's PDU parse and value copy, then table assembly from its varbinds.
pub fn snmp_response(bytes: &[u8]) {
    use crate::scan::snmp::Credential;
    use crate::scan::snmp::burst::Asked;
    let credentials = [Credential::V2c {
        community: "public".to_owned(),
    }];
    // Request ids the seeds use: 1 asked with the community, 2 for v3 engine discovery.
    let asked: HashMap<i32, (Ipv4Addr, Asked)> = [
        (1, (Ipv4Addr::LOCALHOST, Asked::Community(0))),
        (2, (Ipv4Addr::LOCALHOST, Asked::Engine)),
    ]
    .into_iter()
    .collect();
    let _ = crate::scan::snmp::burst::decode(bytes, &credentials, &asked);
    let Ok(pdu) = snmp2::Pdu::from_bytes(bytes) else {
        return;
    };
    let varbinds: Vec<(OidVec, Val)> = value::copy_varbinds(pdu)
        .into_iter()
        .filter_map(|(oid, val)| Some((oid?, val)))
        .collect();
    let values: Vec<Val> = varbinds.iter().map(|(_, v)| v.clone()).collect();
    assemble(&walked(&varbinds), &values);
}

/// Table assembly from rows described compactly (no BER), so the fuzzer reaches the table
/// logic quickly: per row `[root u8][column u8][index length u8][index arcs u8…][type u8]
/// [value length u8][value bytes…]`.
pub fn snmp_tables(mut bytes: &[u8]) {
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = bytes.split_at_checked(n)?;
        bytes = rest;
        Some(head)
    };
    let mut varbinds = Vec::new();
    while let Some(&[root, column, index_len]) = take(3).and_then(|h| <&[u8; 3]>::try_from(h).ok())
    {
        let Some(index) = take(usize::from(index_len % 16)) else {
            break;
        };
        let Some(&[kind, len]) = take(2).and_then(|h| <&[u8; 2]>::try_from(h).ok()) else {
            break;
        };
        let Some(raw) = take(usize::from(len)) else {
            break;
        };
        let mut oid = ROOTS[usize::from(root) % ROOTS.len()].to_vec();
        oid.push(u64::from(column));
        oid.extend(index.iter().map(|&b| u64::from(b)));
        let number = raw
            .iter()
            .take(8)
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        let val = match kind % 12 {
            0 => Val::Int(number as i64),
            1 => Val::Str(raw.to_vec()),
            2 => Val::Oid(raw.iter().map(|&b| u64::from(b)).collect()),
            3 => Val::Ip([
                number as u8,
                (number >> 8) as u8,
                (number >> 16) as u8,
                (number >> 24) as u8,
            ]),
            4 => Val::Counter32(number as u32),
            5 => Val::Unsigned32(number as u32),
            6 => Val::Ticks(number as u32),
            7 => Val::Counter64(number),
            8 => Val::Opaque(raw.to_vec()),
            9 => Val::Null,
            10 => Val::NoSuchInstance,
            _ => Val::EndOfMibView,
        };
        varbinds.push((oid, val));
    }
    let values: Vec<Val> = varbinds.iter().map(|(_, v)| v.clone()).collect();
    assemble(&walked(&varbinds), &values);
}

/// An ICMP packet as the sweep's socket delivers it (with and without the IP header), and an
/// Ethernet frame as the ARP sweep's packet socket does.
pub fn packets(bytes: &[u8]) {
    let _ = crate::scan::icmp::decode(bytes, true);
    let _ = crate::scan::icmp::decode(bytes, false);
    let segment = crate::scan::arp::Segment {
        iface: "fuzz0".to_owned(),
        source: Ipv4Addr::new(198, 18, 0, 1),
        mac: [0x02, 0, 0, 0, 0, 1],
        targets: vec![Ipv4Addr::new(198, 18, 0, 2)],
    };
    if let Some((ip, mac)) = crate::scan::arp::parse_reply(bytes, &segment) {
        assert_ne!(
            ip, segment.source,
            "a reply from our own address is gratuitous"
        );
        assert_eq!(mac[0] & 1, 0, "a multicast sender is never taken");
    }
}

/// The devices the `report_form` target picks from: `(id, name, hostname, room)`.
const DEVICES: &[crate::web::report::Candidate<'static>] = &[
    ("a1", "B12-PC01", "b12-pc01", "B12"),
    ("a2", "B12-PC02", "b12-pc02", "B12"),
    ("a3", "Projector B12", "", "B12"),
    ("a4", "LIB-PC01", "lib-pc01", "Library"),
];

/// A `/report` body as the staff form posts it (`application/x-www-form-urlencoded`), decoded
/// by the very extractor the route uses (`axum::Form`), then checked and its device picked
/// as `web::report::submit` does. A refused body is a 4xx; an accepted one is trimmed and
/// within every bound; a picked device is one that exists and matches what was typed.
pub fn report_form(bytes: &[u8]) {
    use crate::web::report::{self, ReportForm};
    use axum::extract::FromRequest;
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    });
    let Ok(request) = axum::http::Request::builder()
        .method("POST")
        .uri("/report")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(bytes.to_vec()))
    else {
        return;
    };
    let decoded = runtime.block_on(axum::Form::<ReportForm>::from_request(request, &()));
    let form = match decoded {
        Ok(axum::Form(form)) => form,
        Err(rejection) => {
            use axum::response::IntoResponse;
            let status = rejection.into_response().status();
            assert!(
                status.is_client_error(),
                "a bad form is the client's: {status}"
            );
            return;
        }
    };
    let checked = report::check(&form);
    if checked.error.is_empty() {
        assert!(!checked.name.is_empty() && checked.name.len() <= report::MAX_NAME);
        assert!(checked.email.contains('@') && checked.email.len() <= report::MAX_EMAIL);
        assert!(!checked.email.contains(char::is_whitespace));
        assert!(!checked.text.is_empty() && checked.text.len() <= report::MAX_TEXT);
        assert!(checked.room.len() <= report::MAX_NAME && checked.device.len() <= report::MAX_NAME);
    }
    for field in [
        &checked.name,
        &checked.email,
        &checked.room,
        &checked.device,
        &checked.text,
    ] {
        assert_eq!(field.trim(), field.as_str(), "fields are trimmed");
    }
    if !checked.device.is_empty() {
        match report::pick_device(DEVICES, &checked.device, &checked.room) {
            Ok(id) => {
                let (_, name, host, _) = DEVICES.iter().find(|d| d.0 == id).expect("a real device");
                let typed = checked.device.to_lowercase();
                assert!(
                    id == checked.device
                        || name.to_lowercase().contains(&typed)
                        || host.to_lowercase().contains(&typed),
                    "{id} picked for {typed:?}"
                );
            }
            Err(why) => assert!(!why.is_empty()),
        }
    }
}

/// The JSON API in-process, on an in-memory store with a real register writer: the same
/// router, extractors, token check and error mapping the daemon serves.
pub struct Api {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    token: String,
    _writer: crate::register::Writer,
}

impl Default for Api {
    fn default() -> Self {
        Self::new()
    }
}

impl Api {
    pub fn new() -> Self {
        use crate::store::{MemoryStore, Store};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let agents = crate::agents::Agents::load(store.as_ref()).expect("agents");
        let stats = Arc::new(crate::agents::IngestStats::default());
        let health = Arc::new(crate::health::Health::default());
        let config = crate::config::Config::default();
        let (register, writer) = crate::register::start(
            store.clone(),
            crate::app::register_options(&config),
            agents.clone(),
            stats.clone(),
            health.clone(),
        )
        .expect("register");
        let token = "fuzz-token".to_owned();
        let _enter = runtime.enter();
        let school_hours = Arc::new(std::sync::RwLock::new(Arc::new(config.hours.clone())));
        let ops = Arc::new(crate::ops::Ops {
            reloader: crate::reload::Reloader::start(
                config.clone(),
                register.clone(),
                school_hours.clone(),
                Box::new(|_, _| {}),
                Box::new(|_, _| {}),
                tokio_util::sync::CancellationToken::new(),
            ),
            school_hours,
            snapshots: Arc::new(crate::backup::Snapshots {
                data_dir: std::env::temp_dir(),
                skip: vec![],
                register: register.clone(),
            }),
            metrics: config.metrics.clone(),
        });
        let web = crate::web::Web::new(
            &config,
            store.clone(),
            register.clone(),
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .expect("web");
        // The CA lives in a directory of this process's own (made once per fuzzing process).
        let pki_dir =
            std::env::temp_dir().join(format!("caretaker-fuzz-pki-{}", std::process::id()));
        let pki = Arc::new(
            crate::pki::Pki::open(&pki_dir, crate::pki::TlsConfig::default(), 50051).expect("pki"),
        );
        let state = crate::http::ApiState {
            pki,
            ops,
            web,
            store,
            agents,
            stats,
            health,
            api_token: token.clone().into(),
            stale_after: config.agents.stale_after,
            reach_stale_after: config.agents.stale_after,
            school_hours: Arc::new(config.hours.clone()),
            register,
        };
        Self {
            runtime,
            router: crate::http::router(state),
            token,
            _writer: writer,
        }
    }

    /// One request: `[method u8][flags u8][path length u8][path…][body…]` (flags: bit 0 sends
    /// the right token, bit 1 says the body is JSON). Checks that the API never answers 500
    /// (a bug) and that every error is `{"error": "…"}`.
    pub fn request(&self, bytes: &[u8]) {
        use tower::ServiceExt;
        let [method, flags, path_len, rest @ ..] = bytes else {
            return;
        };
        let (path, body) = rest.split_at(usize::from(*path_len).min(rest.len()));
        let method = ["GET", "POST", "DELETE", "PUT"][usize::from(*method % 4)];
        let path = String::from_utf8_lossy(path);
        let uri = format!("/api/v1/{}", path.trim_start_matches('/'));
        let mut builder = axum::http::Request::builder().method(method).uri(&uri);
        if flags & 1 == 1 {
            builder = builder.header("authorization", format!("Bearer {}", self.token));
        }
        if flags & 2 == 2 {
            builder = builder.header("content-type", "application/json");
        }
        let Ok(request) = builder.body(axum::body::Body::from(body.to_vec())) else {
            return; // not a URI hyper would have handed us
        };
        let router = self.router.clone();
        let (status, body) = self.runtime.block_on(async move {
            let response = router.oneshot(request).await.expect("infallible");
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 16 << 20)
                .await
                .expect("body");
            (status, body)
        });
        assert_ne!(status.as_u16(), 500, "{method} {uri}: {body:?}");
        if status.is_client_error() || status.is_server_error() {
            let value: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{method} {uri}: {status} not JSON ({e}): {body:?}"));
            assert!(value["error"].is_string(), "{method} {uri}: {body:?}");
        }
    }
}

/// An uploaded asset CSV, as the importer reads it for the dry run and the import. The same
/// bytes always give the same answer; a refusal lists at most `MAX_ERRORS` errors, each on a
/// row that exists in the file; an acceptance holds rows in file order, every one able to
/// find or make its asset, and its cost, if any, a sane number of pence.
pub fn csv_import(bytes: &[u8]) {
    use crate::csv::import::{self, MAX_ERRORS, MAX_ROWS};
    use crate::model::register::EditTarget;
    let first = import::parse_assets(bytes);
    assert_eq!(
        first,
        import::parse_assets(bytes),
        "the importer is deterministic"
    );
    let lines = bytes
        .iter()
        .filter(|b| **b == b'\n' || **b == b'\r')
        .count()
        + 1;
    match first {
        Ok(rows) => {
            assert!(rows.len() <= MAX_ROWS);
            let mut last = 1;
            for row in &rows {
                assert!(
                    row.row > last && row.row <= lines,
                    "row {} after {last}",
                    row.row
                );
                last = row.row;
                let EditTarget::Match {
                    asset_tag,
                    serial,
                    macs,
                    ..
                } = &row.edit.target
                else {
                    panic!("an imported row matches or creates; it never names an asset id")
                };
                assert!(
                    !asset_tag.is_empty() || !serial.is_empty() || !macs.is_empty(),
                    "row {} has nothing to match by",
                    row.row
                );
                if let Some(Some(cost)) = row.edit.patch.cost_pence {
                    assert!(cost >= 0, "a cost of {cost} pence");
                }
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty() && errors.len() <= MAX_ERRORS);
            for error in &errors {
                assert!(
                    error.row >= 1 && error.row <= lines,
                    "{error} in {lines} lines"
                );
                assert!(!error.message.is_empty());
                assert!(error.to_string().starts_with(&format!("row {}", error.row)));
            }
        }
    }
}
