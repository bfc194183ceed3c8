//! Joining a thread within a deadline: shutdown waits for each thread it stopped, but never
//! longer than it promised (a thread blocked where nothing can interrupt it, such as a DNS
//! lookup, is left to end alone and named in the log).

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Joins `handle` if its thread ends by `deadline` and returns its result; otherwise returns
/// the handle, the thread still running.
pub fn join_by<T>(handle: JoinHandle<T>, deadline: Instant) -> Result<thread::Result<T>, JoinHandle<T>> {
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return Err(handle);
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(handle.join())
}

/// The name of `handle`'s thread, for a log line about it.
pub fn name<T>(handle: &JoinHandle<T>) -> String {
    handle.thread().name().unwrap_or("unnamed").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_in_time_or_hands_the_thread_back() {
        let quick = thread::spawn(|| 7);
        assert_eq!(join_by(quick, Instant::now() + Duration::from_secs(5)).ok().and_then(Result::ok), Some(7));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let slow = thread::Builder::new().name("slow".into()).spawn(move || rx.recv().is_err()).unwrap();
        let slow = join_by(slow, Instant::now() + Duration::from_millis(20)).unwrap_err();
        assert_eq!(name(&slow), "slow");
        drop(tx);
        assert!(join_by(slow, Instant::now() + Duration::from_secs(5)).ok().and_then(Result::ok).unwrap_or(false));
    }
}
