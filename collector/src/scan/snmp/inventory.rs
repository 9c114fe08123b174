//! The two entry points: [`probe`] (which credential answers) and [`inventory`] (what the
//! device is and has). Both run on one session per device, one request at a time, within
//! `Limits::device_deadline`; tables are walked only when the MIB answered a GETNEXT, and
//! each table's trouble becomes a note rather than an error.

use std::net::SocketAddr;

use tokio::time::Instant;
use tracing::{Instrument, debug, info_span};

use super::classify::{self, Mibs, PROBE_ROOTS, SCALAR_OIDS, Scalars};
use super::session::{Client, Column};
use super::tables::{self, Walked, oids};
use super::value::{OidVec, Val, nonempty_text, oid_string, parse_dotted, text, uint};
use super::{
    Credential, GapReason, Limits, SnmpError, SnmpGap, SnmpSection, SnmpSnapshot, SystemInfo,
};
use crate::model::AssetKind;

const SYSTEM: [&[u64]; 7] = [
    &[1, 3, 6, 1, 2, 1, 1, 1, 0], // sysDescr
    &[1, 3, 6, 1, 2, 1, 1, 2, 0], // sysObjectID
    &[1, 3, 6, 1, 2, 1, 1, 3, 0], // sysUpTime
    &[1, 3, 6, 1, 2, 1, 1, 4, 0], // sysContact
    &[1, 3, 6, 1, 2, 1, 1, 5, 0], // sysName
    &[1, 3, 6, 1, 2, 1, 1, 6, 0], // sysLocation
    &[1, 3, 6, 1, 2, 1, 1, 7, 0], // sysServices
];

fn system_from(values: &[Val]) -> SystemInfo {
    let t = |i: usize| values.get(i).and_then(text).unwrap_or_default();
    SystemInfo {
        descr: t(0),
        object_id: values.get(1).and_then(oid_string).unwrap_or_default(),
        uptime_ticks: values.get(2).and_then(uint),
        contact: t(3),
        name: t(4),
        location: t(5),
        services: values
            .get(6)
            .and_then(uint)
            .and_then(|v| u32::try_from(v).ok()),
    }
}

/// Tries the credentials in order with a GET of the system group; returns the index of the
/// first one that gets an answer, and the system group.
pub async fn probe(
    target: SocketAddr,
    credentials: &[Credential],
    limits: &Limits,
) -> Result<(usize, SystemInfo), SnmpError> {
    let oids: Vec<OidVec> = SYSTEM.iter().map(|o| o.to_vec()).collect();
    for (index, credential) in credentials.iter().enumerate() {
        let attempt = async {
            let deadline = Instant::now() + limits.timeout * (limits.retries + 1);
            let mut client = Client::open(target, credential, limits).await?;
            client.get(&oids, deadline).await
        };
        match attempt
            .instrument(info_span!("snmp_probe", %target, credential = index))
            .await
        {
            Ok(values) => return Ok((index, system_from(&values))),
            Err(SnmpError::Io(error)) => return Err(SnmpError::Io(error)),
            Err(error) => {
                debug!(%target, credential = index, %error, "SNMP credential got no answer")
            }
        }
    }
    Err(SnmpError::NoCredential)
}

fn columns(entry: &[u64], cols: &[u64]) -> Vec<OidVec> {
    cols.iter().map(|c| [entry, &[*c]].concat()).collect()
}

/// Full inventory with one credential (the one [`probe`] found).
pub async fn inventory(
    target: SocketAddr,
    credential: &Credential,
    limits: &Limits,
) -> Result<SnmpSnapshot, SnmpError> {
    run_inventory(target, credential, limits)
        .instrument(info_span!("snmp_inventory", %target))
        .await
}

async fn run_inventory(
    target: SocketAddr,
    credential: &Credential,
    limits: &Limits,
) -> Result<SnmpSnapshot, SnmpError> {
    let started = Instant::now();
    let deadline = started + limits.device_deadline;
    let mut client = Client::open(target, credential, limits).await?;
    let mut notes: Vec<String> = Vec::new();
    let mut gaps: Vec<SnmpGap> = Vec::new();
    let mut gap = |section: SnmpSection, reason: GapReason| {
        let gap = SnmpGap { section, reason };
        if !gaps.contains(&gap) {
            gaps.push(gap);
        }
    };

    // 1. System group and vendor scalars in one GET: a device that does not answer this fails.
    let mut scalar_oids: Vec<OidVec> = SYSTEM.iter().map(|o| o.to_vec()).collect();
    scalar_oids.extend(SCALAR_OIDS.iter().filter_map(|o| parse_dotted(o)));
    let values = client.get(&scalar_oids, deadline).await?;
    let system = system_from(&values[..SYSTEM.len()]);
    let scalar_texts: Vec<String> = values[SYSTEM.len()..]
        .iter()
        .map(|v| nonempty_text(v).unwrap_or_default())
        .collect();
    let scalars = Scalars::from_texts(&scalar_texts);
    for (field, value) in [
        ("sysDescr", &system.descr),
        ("sysObjectID", &system.object_id),
        ("sysName", &system.name),
    ] {
        if value.is_empty() {
            notes.push(format!("{field} missing"));
        }
    }

    // 2. Which MIBs answer: one GETNEXT per root (one GETBULK for v2c/v3).
    let roots: Vec<OidVec> = PROBE_ROOTS.iter().map(|r| r.to_vec()).collect();
    let mibs = match client.next(&roots, deadline).await {
        Ok(firsts) => {
            let present: Vec<bool> = firsts
                .iter()
                .zip(&roots)
                .map(|(first, root)| first.as_ref().is_some_and(|(oid, _)| oid.starts_with(root)))
                .collect();
            Mibs::from_presence(&present)
        }
        Err(error) => {
            notes.push(format!("MIB presence probe: {error}"));
            gap(
                SnmpSection::Mibs,
                if matches!(error, SnmpError::Timeout) {
                    GapReason::Timeout
                } else {
                    GapReason::Error
                },
            );
            Mibs::default()
        }
    };
    let kind = classify::classify(&system.object_id, &system.descr, &mibs);
    debug!(?mibs, ?kind, "SNMP device classified");

    // 3. Tables, each only when its MIB answered.
    let mut walked = Walked::default();
    let mut plan: Vec<(SnmpSection, Vec<OidVec>)> = vec![(
        SnmpSection::Interfaces,
        [
            columns(oids::IF_TABLE_ENTRY, &[2, 5, 6, 7, 8, 10, 14, 16, 20]),
            columns(oids::IF_X_ENTRY, &[1, 6, 10, 15, 18]),
        ]
        .concat(),
    )];
    if mibs.entity {
        plan.push((
            SnmpSection::Entities,
            columns(oids::ENT_PHYSICAL_ENTRY, &[2, 5, 7, 8, 9, 10, 11, 13]),
        ));
    }
    if mibs.host_resources {
        let mut hr = columns(oids::HR_STORAGE_ENTRY, &[2, 3, 4, 5, 6]);
        hr.push(oids::HR_PROCESSOR_LOAD.to_vec());
        if mibs.printer || kind == AssetKind::Printer {
            hr.extend(columns(oids::HR_DEVICE_ENTRY, &[2, 3]));
            hr.push(oids::HR_PRINTER_ERROR_STATE.to_vec());
        }
        plan.push((SnmpSection::HostResources, hr));
        if matches!(kind, AssetKind::Server | AssetKind::Pc) {
            plan.push((
                SnmpSection::Software,
                vec![oids::HR_SW_INSTALLED_NAME.to_vec()],
            ));
        }
    }
    if mibs.printer {
        let mut prt = columns(oids::PRT_SUPPLIES_ENTRY, &[3, 5, 6, 7, 8, 9]);
        prt.push(oids::PRT_COLORANT_VALUE.to_vec());
        prt.push(oids::PRT_MARKER_LIFE_COUNT.to_vec());
        plan.push((SnmpSection::Printer, prt));
    }
    if mibs.bridge {
        plan.push((
            SnmpSection::Fdb,
            vec![
                oids::DOT1D_BASE_PORT_IFINDEX.to_vec(),
                oids::DOT1Q_TP_FDB_PORT.to_vec(),
                oids::DOT1D_TP_FDB_PORT.to_vec(),
            ],
        ));
    }
    if mibs.lldp {
        let mut l = columns(oids::LLDP_REM_ENTRY, &[4, 5, 6, 7, 8, 9, 10]);
        l.push(oids::LLDP_REM_MAN_ADDR_IF_SUBTYPE.to_vec());
        plan.push((SnmpSection::Lldp, l));
    }
    for (section, roots) in plan {
        let table = section_name(section);
        if Instant::now() >= deadline {
            notes.push(format!("{table}: device deadline reached, not read"));
            gap(section, GapReason::Deadline);
            continue;
        }
        let cols: Vec<Column> = client.walk(&roots, deadline).await;
        let mut details: Vec<String> = Vec::new();
        for (root, col) in roots.into_iter().zip(cols) {
            if let Some(stop) = col.stopped {
                gap(section, stop.reason);
                if !details.contains(&stop.detail) {
                    details.push(stop.detail);
                }
            }
            walked.insert(root, col.rows);
        }
        for detail in details {
            notes.push(format!("{table}: {detail}"));
        }
    }

    let mut ups = None;
    if mibs.ups_mib || mibs.powernet {
        match client.get(&tables::ups_scalar_oids(), deadline).await {
            Ok(values) => ups = tables::ups_from(&values),
            Err(error) => {
                notes.push(format!("ups: {error}"));
                gap(
                    SnmpSection::Ups,
                    if matches!(error, SnmpError::Timeout) {
                        GapReason::Timeout
                    } else {
                        GapReason::Error
                    },
                );
            }
        }
    }

    // 4. Assemble.
    let interfaces = tables::interfaces(&walked);
    let entities = tables::entities(&walked);
    let (supplies, supply_notes) = tables::supplies(&walked);
    notes.extend(supply_notes);
    let printer_descr = tables::printer_device_descr(&walked);
    let id = classify::identify(
        &system.object_id,
        &system.descr,
        kind,
        &mibs,
        &scalars,
        &entities,
        printer_descr.as_deref(),
    );
    let device = SnmpSnapshot {
        collected_at: Some(time::OffsetDateTime::now_utc()),
        kind,
        vendor: id.vendor,
        model: id.model,
        serial: id.serial,
        firmware: id.firmware,
        interfaces,
        entities,
        storage: tables::storage(&walked),
        processor_loads: tables::processor_loads(&walked),
        software: tables::software(&walked),
        supplies,
        page_count: tables::page_count(&walked),
        printer_errors: tables::printer_errors(&walked),
        fdb: tables::fdb(&walked),
        lldp: tables::lldp(&walked),
        ups,
        gaps,
        stale: Vec::new(),
        notes,
        system,
    };
    debug!(
        requests = client.requests,
        elapsed_ms = started.elapsed().as_millis() as u64,
        interfaces = device.interfaces.len(),
        notes = device.notes.len(),
        "SNMP inventory done"
    );
    Ok(device)
}

/// The section's name in notes, as technicians know the tables.
fn section_name(section: SnmpSection) -> &'static str {
    match section {
        SnmpSection::Mibs => "MIB presence probe",
        SnmpSection::Interfaces => "interfaces",
        SnmpSection::Entities => "entities",
        SnmpSection::HostResources => "host-resources",
        SnmpSection::Software => "software",
        SnmpSection::Printer => "printer",
        SnmpSection::Fdb => "fdb",
        SnmpSection::Lldp => "lldp",
        SnmpSection::Ups => "ups",
    }
}
