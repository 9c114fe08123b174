//! What an agent's `Submit` must look like before anything else reads it: the protobuf
//! decode and the bounds of `caretaker_proto::limits`, in one place.
//!
//! `ingest` calls [`check_reports`] on what tonic decoded; the `submit` fuzz target (`fuzz/`)
//! calls [`decode_submit`], which is the same prost decode tonic does followed by the same
//! checks, so the fuzzer exercises exactly what a hostile client reaches. Pure: no I/O, no
//! state.

use caretaker_proto::v1::{Report, SubmitRequest, report};
use prost::Message;
use tonic::Status;

pub use caretaker_proto::limits::{MAX_ENTRIES, MAX_SOFTWARE, MAX_SOFTWARE_ENTRY_BYTES};

/// Reports one Submit may carry.
pub const MAX_REPORTS_PER_SUBMIT: usize = 256;

/// Decodes a Submit body (the gRPC message without its 5-byte frame header) as ingest does,
/// then checks its shape and bounds. Messages past `max_message_bytes` never get here: tonic
/// refuses them first (RESOURCE_EXHAUSTED).
pub fn decode_submit(bytes: &[u8]) -> Result<SubmitRequest, Status> {
    let request = SubmitRequest::decode(bytes)
        .map_err(|error| Status::invalid_argument(format!("not a SubmitRequest: {error}")))?;
    check_reports(&request.reports)?;
    Ok(request)
}

/// INVALID_ARGUMENT with what the agent should do about it (see `SubmitResponse` in the
/// proto): drop one report (`"report"`, with its seq), or start a new sequence epoch
/// (`"sequence"`).
pub(crate) fn refusal(message: String, what: &'static str, seq: Option<u64>) -> Status {
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(
        "x-caretaker-refused",
        tonic::metadata::MetadataValue::from_static(what),
    );
    if let Some(seq) = seq
        && let Ok(value) = seq.to_string().parse()
    {
        metadata.insert("x-caretaker-seq", value);
    }
    Status::with_metadata(tonic::Code::InvalidArgument, message, metadata)
}

/// The shape of a Submit's reports: at least one, at most [`MAX_REPORTS_PER_SUBMIT`], in
/// increasing seq order from 1. A report that can never be stored (no time, no body, past a
/// bound) is refused as `x-caretaker-refused: report` with its seq, so the agent drops that
/// one and sends the rest instead of retrying it forever.
pub fn check_reports(reports: &[Report]) -> Result<(), Status> {
    if reports.is_empty() {
        return Err(Status::invalid_argument(
            "a submit needs at least one report",
        ));
    }
    if reports.len() > MAX_REPORTS_PER_SUBMIT {
        return Err(Status::invalid_argument(format!(
            "at most {MAX_REPORTS_PER_SUBMIT} reports per submit"
        )));
    }
    let mut previous = 0;
    for report in reports {
        if report.seq == 0 {
            return Err(Status::invalid_argument("report seq must start at 1"));
        }
        if report.seq <= previous {
            return Err(Status::invalid_argument(
                "reports must be in increasing seq order",
            ));
        }
        previous = report.seq;
        let refuse = |what: String| {
            refusal(
                format!("report {}: {what}", report.seq),
                "report",
                Some(report.seq),
            )
        };
        if report.collected_at.is_none() {
            return Err(refuse("no collected_at".to_owned()));
        }
        if report.body.is_none() {
            return Err(refuse("no body".to_owned()));
        }
        check_entries(report).map_err(refuse)?;
    }
    Ok(())
}

/// The per-report bounds on repeated entries: what is wrong, in a few words.
fn check_entries(report: &Report) -> Result<(), String> {
    let bound = |what: &str, n: usize, max: usize| {
        if n > max {
            Err(format!("{n} {what}, at most {max}"))
        } else {
            Ok(())
        }
    };
    bound("missing sections", report.missing.len(), 16)?;
    match &report.body {
        Some(report::Body::Inventory(inventory)) => {
            bound("programs", inventory.software.len(), MAX_SOFTWARE)?;
            bound("disks", inventory.disks.len(), MAX_ENTRIES)?;
            bound("volumes", inventory.volumes.len(), MAX_ENTRIES)?;
            bound("interfaces", inventory.interfaces.len(), MAX_ENTRIES)?;
            for nic in &inventory.interfaces {
                bound(
                    "addresses on one interface",
                    nic.ipv4.len() + nic.ipv6.len(),
                    MAX_ENTRIES,
                )?;
            }
            if let Some(big) = inventory
                .software
                .iter()
                .find(|s| s.encoded_len() > MAX_SOFTWARE_ENTRY_BYTES)
            {
                return Err(format!(
                    "program {:?} takes more than {MAX_SOFTWARE_ENTRY_BYTES} bytes",
                    big.name.chars().take(64).collect::<String>()
                ));
            }
        }
        Some(report::Body::Status(status)) => {
            bound("volumes", status.volumes.len(), MAX_ENTRIES)?;
            bound("logged-on users", status.logged_on_users.len(), MAX_ENTRIES)?;
        }
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use caretaker_proto::v1;

    fn status_report(seq: u64) -> Report {
        Report {
            seq,
            collected_at: Some(prost_types::Timestamp::default()),
            body: Some(report::Body::Status(v1::Status::default())),
            ..Default::default()
        }
    }

    #[test]
    fn a_report_past_a_bound_is_refused_as_that_report_so_the_agent_can_drop_it() {
        let mut big = status_report(2);
        if let Some(report::Body::Status(status)) = &mut big.body {
            status.logged_on_users = vec![String::new(); MAX_ENTRIES + 1];
        }
        let refused = check_reports(&[status_report(1), big]).expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            refused.metadata().get("x-caretaker-refused").unwrap(),
            "report"
        );
        assert_eq!(refused.metadata().get("x-caretaker-seq").unwrap(), "2");
        assert!(
            refused
                .message()
                .contains("1025 logged-on users, at most 1024")
        );
    }

    #[test]
    fn garbage_and_empty_submits_are_invalid_argument() {
        let garbage = decode_submit(&[0x12, 0xff, 0xff]).expect_err("garbage");
        assert_eq!(garbage.code(), tonic::Code::InvalidArgument);
        let empty = decode_submit(&[]).expect_err("no reports");
        assert_eq!(empty.code(), tonic::Code::InvalidArgument);
        let good = SubmitRequest {
            agent_id: "a".into(),
            reports: vec![status_report(1)],
            epoch: 0,
        };
        assert_eq!(decode_submit(&good.encode_to_vec()).expect("valid"), good);
    }
}
