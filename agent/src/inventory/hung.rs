//! Calls that may never return (WMI, COM): each runs on its own thread and the caller waits
//! at most a timeout. A thread that outlives its timeout is abandoned, not killed (Windows
//! cannot safely kill a thread inside COM); at most [`MAX_STUCK`] may be outstanding, after
//! which new calls fail at once instead of piling up threads.
// Used by the Windows readers; elsewhere only the tests (and batteries) call in.
#![cfg_attr(not(windows), allow(dead_code))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::SourceError;

/// Calls still running (finished or not) on their threads.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// How many unfinished threads are tolerated before new calls are refused.
pub const MAX_STUCK: usize = 4;

/// Runs `f` on its own thread and waits at most `timeout` for it (see the module comment).
pub fn run_bounded<T, F>(timeout: Duration, f: F) -> Result<T, SourceError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, SourceError> + Send + 'static,
{
    if IN_FLIGHT.fetch_add(1, Ordering::SeqCst) >= MAX_STUCK {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        return Err(SourceError::Other(format!(
            "{MAX_STUCK} earlier calls (WMI) are still hung; not starting another"
        )));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("bounded-call".into())
        .spawn(move || {
            let result = f();
            IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
            // The caller may have stopped waiting; that is fine.
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        return Err(SourceError::Other(format!(
            "cannot start a worker thread: {e}"
        )));
    }
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(SourceError::Timeout(timeout)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err(SourceError::Other("worker thread failed".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_query_times_out_and_stuck_threads_are_capped() {
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = std::sync::Arc::new(std::sync::Mutex::new(release_rx));
        // Hang MAX_STUCK queries.
        for _ in 0..MAX_STUCK {
            let rx = release_rx.clone();
            let r = run_bounded(Duration::from_millis(20), move || {
                let _ = rx.lock().unwrap().recv();
                Ok(())
            });
            assert!(matches!(r, Err(SourceError::Timeout(_))));
        }
        // The next one is refused at once rather than adding a thread.
        let r = run_bounded(Duration::from_secs(60), || Ok(1));
        assert!(
            matches!(r, Err(SourceError::Other(ref m)) if m.contains("still hung")),
            "{r:?}"
        );
        // Once they finish, queries run again.
        for _ in 0..MAX_STUCK {
            release_tx.send(()).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match run_bounded(Duration::from_secs(5), || Ok(7)) {
                Ok(7) => break,
                _ if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                other => panic!("queries did not resume: {other:?}"),
            }
        }
    }
}
