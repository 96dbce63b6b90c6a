//! CPU time this process used over part of the run, for the report's `bench cpu` line. Reads the
//! process's rusage only: no run state.

use std::time::{Duration, Instant};

/// CPU time this process used so far (user, system).
pub(super) fn cpu_time() -> (Duration, Duration) {
    wsloop::sys::process_cpu_time()
}

/// CPU use of this process over part of the run.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CpuUse {
    pub(super) user: Duration,
    pub(super) system: Duration,
    pub(super) wall: Duration,
}

impl CpuUse {
    pub(super) fn between(start: ((Duration, Duration), Instant), end: ((Duration, Duration), Instant)) -> Self {
        Self {
            user: end.0 .0.saturating_sub(start.0 .0),
            system: end.0 .1.saturating_sub(start.0 .1),
            wall: end.1.saturating_duration_since(start.1),
        }
    }

    /// Percent of one core.
    pub(super) fn percent(&self) -> f64 {
        let wall = self.wall.as_secs_f64();
        if wall > 0.0 {
            (self.user + self.system).as_secs_f64() / wall * 100.0
        } else {
            0.0
        }
    }
}
