//! The writer's batching and failure paths, driven one batch at a time (`State::process`)
//! against a store that fails on demand, and the thread's stop path.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use caretaker_proto::v1::{self, Report, report};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::*;
use crate::cmdb::EnrolmentHints;
use crate::store::faulty::FaultyStore;

fn options() -> Options {
    Options {
        cmdb: Settings::default(),
        detection: Detection::default(),
        reach_refresh: time::Duration::minutes(15),
        recover_every: Duration::ZERO,
    }
}

fn state(store: &Arc<FaultyStore>) -> State {
    let store: Arc<dyn Store> = store.clone();
    State::load(
        store.clone(),
        options(),
        Agents::load(store.as_ref()).expect("agents"),
        Arc::default(),
    )
    .expect("load")
}

fn agent(id: &str) -> AgentRecord {
    AgentRecord {
        agent_id: id.to_owned(),
        secret_sha256: String::new(),
        enrolled_at: OffsetDateTime::now_utc(),
        hostname: format!("{id}-pc"),
        smbios_uuid: String::new(),
        macs: Vec::new(),
        peer: String::new(),
        asset_id: None,
        epoch: 0,
    }
}

/// A status report; its time depends on `seq` (samples are keyed by time).
fn status(seq: u64) -> Report {
    let now = OffsetDateTime::now_utc();
    Report {
        seq,
        collected_at: Some(prost_types::Timestamp {
            seconds: now.unix_timestamp() - 3600,
            nanos: (seq % 1_000_000) as i32 * 1000,
        }),
        body: Some(report::Body::Status(v1::Status {
            cpu_percent: 5.0,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn inventory(seq: u64, hostname: &str) -> Report {
    Report {
        body: Some(report::Body::Inventory(v1::Inventory {
            system: Some(v1::System {
                hostname: hostname.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..status(seq)
    }
}

type Answer<T> = oneshot::Receiver<Result<T, RegisterError>>;

fn enrol(id: &str) -> (Job, Answer<Vec<String>>) {
    let (reply, answer) = oneshot::channel();
    let job = Job::Enroll {
        agent: agent(id),
        hints: EnrolmentHints::default(),
        reply,
    };
    (job, answer)
}

fn submit(id: &str, reports: Vec<Report>) -> (Job, Answer<Result<u64, Refused>>) {
    submit_in(id, 0, reports)
}

fn submit_in(id: &str, epoch: u64, reports: Vec<Report>) -> (Job, Answer<Result<u64, Refused>>) {
    let (reply, answer) = oneshot::channel();
    let job = Job::Submit {
        agent_id: id.to_owned(),
        epoch,
        reports,
        received_at: OffsetDateTime::now_utc(),
        reply,
    };
    (job, answer)
}

fn answer<T>(mut answer: Answer<T>) -> Result<T, RegisterError> {
    answer.try_recv().expect("the job was answered")
}

/// The acknowledged sequence of a submit that was neither refused nor failed.
fn acked(reply: Answer<Result<u64, Refused>>) -> u64 {
    answer(reply).expect("committed").expect("not refused")
}

/// Enrols `ids` in one batch and returns the state.
fn with_agents(store: &Arc<FaultyStore>, ids: &[&str]) -> State {
    let mut state = state(store);
    let (jobs, answers): (Vec<_>, Vec<_>) = ids.iter().map(|id| enrol(id)).unzip();
    state.process(jobs.into_iter());
    for a in answers {
        answer(a).expect("enrolled");
    }
    state
}

#[test]
fn a_batch_is_one_commit_and_every_job_is_answered_after_it() {
    let store = Arc::new(FaultyStore::default());
    let mut state = with_agents(&store, &["a", "b"]);
    let before = store.commits.load(Ordering::SeqCst);
    let (ja, aa) = submit("a", vec![inventory(1, "a-pc"), status(2), status(3)]);
    let (jb, ab) = submit("b", vec![status(1)]);
    let (ja2, aa2) = submit("a", vec![status(3), status(4)]);
    state.process([ja, jb, ja2].into_iter());
    assert_eq!(
        store.commits.load(Ordering::SeqCst),
        before + 1,
        "one fsync"
    );
    assert_eq!(acked(aa), 3);
    assert_eq!(acked(ab), 1);
    assert_eq!(acked(aa2), 4, "3 was a duplicate");
    assert_eq!(store.inner.agent_seqs().expect("seqs")["a"], 4);
}

#[test]
fn a_failed_commit_acknowledges_nothing_and_the_retry_is_stored() {
    let store = Arc::new(FaultyStore::default());
    let mut state = with_agents(&store, &["a"]);
    store.failing_commits.store(1, Ordering::SeqCst);
    let (job, reply) = submit("a", vec![inventory(1, "a-pc"), status(2)]);
    state.process(std::iter::once(job));
    match answer(reply) {
        Err(RegisterError::Store(_)) => {}
        other => panic!("expected a store error, got {other:?}"),
    }
    assert_eq!(store.inner.agent_seqs().expect("seqs").get("a"), None);
    // The agent sends the same reports again: they are new, not duplicates.
    let (job, reply) = submit("a", vec![inventory(1, "a-pc"), status(2)]);
    state.process(std::iter::once(job));
    assert_eq!(acked(reply), 2);
    let asset = store.inner.assets().expect("assets");
    assert_eq!(asset.len(), 1, "{asset:?}");
    assert!(
        store.inner.inventory(&asset[0].id).expect("read").is_some(),
        "the inventory of the retried report is stored"
    );
    assert_eq!(state.stats.commits_failed.load(Ordering::Relaxed), 1);
}

#[test]
fn one_bad_job_fails_alone_and_the_rest_of_its_batch_is_committed() {
    let store = Arc::new(FaultyStore::default());
    let mut state = with_agents(&store, &["a", "b"]);
    let (job, reply) = submit("a", vec![inventory(1, "a-pc")]);
    state.process(std::iter::once(job));
    acked(reply);
    let asset_a = state
        .cmdb
        .asset_of_agent(&"a".to_owned())
        .expect("a is bound");
    *store.corrupt_inventory.lock().expect("lock") = Some(asset_a);
    let (bad, bad_reply) = submit("a", vec![inventory(2, "a-pc")]);
    let (good, good_reply) = submit("b", vec![inventory(1, "b-pc"), status(2)]);
    state.process([bad, good].into_iter());
    assert!(matches!(answer(bad_reply), Err(RegisterError::Store(_))));
    assert_eq!(acked(good_reply), 2);
    let seqs = store.inner.agent_seqs().expect("seqs");
    assert_eq!((seqs["a"], seqs["b"]), (1, 2));
}

#[test]
fn while_the_store_cannot_be_read_back_jobs_are_refused_then_it_recovers() {
    let store = Arc::new(FaultyStore::default());
    let mut state = with_agents(&store, &["a"]);
    store.failing_commits.store(1, Ordering::SeqCst);
    store.failing_reads.store(true, Ordering::SeqCst);
    let (job, reply) = submit("a", vec![status(1)]);
    state.process(std::iter::once(job));
    assert!(answer(reply).is_err());
    let (job, reply) = submit("a", vec![status(1)]);
    state.process(std::iter::once(job));
    assert!(
        matches!(answer(reply), Err(RegisterError::Store(_))),
        "refused while stale"
    );
    store.failing_reads.store(false, Ordering::SeqCst);
    let (job, reply) = submit("a", vec![status(1), status(2)]);
    state.process(std::iter::once(job));
    assert_eq!(acked(reply), 2);
}

#[test]
fn a_new_epoch_restarts_the_sequence_and_absurd_jumps_are_refused() {
    let store = Arc::new(FaultyStore::default());
    let mut state = with_agents(&store, &["a"]);
    let (job, reply) = submit_in("a", 7, vec![status(1), status(2), status(3)]);
    state.process(std::iter::once(job));
    assert_eq!(acked(reply), 3);
    // The agent lost its journal bookkeeping: a new epoch, numbers from 1 again. Without the
    // epoch these would be taken for retries and silently dropped.
    let later = |seq| {
        let mut report = status(seq);
        if let Some(at) = report.collected_at.as_mut() {
            at.seconds += 60;
        }
        report
    };
    let (job, reply) = submit_in("a", 8, vec![later(1), later(2)]);
    state.process(std::iter::once(job));
    assert_eq!(acked(reply), 2);
    let asset = state.cmdb.asset_of_agent(&"a".to_owned()).expect("bound");
    let far = OffsetDateTime::now_utc() + time::Duration::days(1);
    let stored = store
        .inner
        .samples(&asset, OffsetDateTime::UNIX_EPOCH, far, 100)
        .expect("samples");
    assert_eq!(stored.len(), 5, "both epochs' reports are stored");
    // Within one epoch, a retry is still a retry.
    let (job, reply) = submit_in("a", 8, vec![later(2)]);
    state.process(std::iter::once(job));
    assert_eq!(acked(reply), 2);
    // A report numbered u64::MAX is refused whole, and nothing moves.
    let (job, reply) = submit_in("a", 8, vec![status(u64::MAX)]);
    state.process(std::iter::once(job));
    assert!(matches!(
        answer(reply).expect("answered"),
        Err(Refused::SequenceJump { acked: 2, .. })
    ));
    assert_eq!(store.inner.agent_seqs().expect("seqs")["a"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_finishes_what_is_queued_and_refuses_what_comes_after() {
    let store = Arc::new(FaultyStore::default());
    let dyn_store: Arc<dyn Store> = store.clone();
    let (register, writer) = start(
        dyn_store.clone(),
        options(),
        Agents::load(dyn_store.as_ref()).expect("agents"),
        Arc::default(),
        Arc::default(),
    )
    .expect("start");
    register
        .ask(|reply| Job::Enroll {
            agent: agent("a"),
            hints: EnrolmentHints::default(),
            reply,
        })
        .await
        .expect("enrolled");
    let mut answers = Vec::new();
    for seq in 1..=50 {
        let (job, reply) = submit("a", vec![status(seq)]);
        register.send(job).await.expect("queued");
        answers.push(reply);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    assert!(writer.stop(deadline).await, "stopped before the deadline");
    for reply in answers {
        reply
            .await
            .expect("answered")
            .expect("committed")
            .expect("not refused");
    }
    assert_eq!(store.inner.agent_seqs().expect("seqs")["a"], 50);
    let (job, _) = submit("a", vec![status(51)]);
    assert!(matches!(
        register.send(job).await,
        Err(RegisterError::WriterGone)
    ));
}
