//! The hot path's clock: ticks (the time-stamp counter, or nanoseconds elsewhere) and their
//! calibration against `Instant`. Owns no run state and never touches connections or counters.

use std::time::{Duration, Instant};

/// A cheap monotonic clock for the hot path: the CPU's time-stamp counter on x86_64 (the kernel already
/// trusts it as its clocksource on the machines we measure on), nanoseconds since a process epoch
/// elsewhere. Ticks become time through [`Clock::per_us`], calibrated against `Instant` at start.
pub(super) mod ticks {
    pub(in crate::bench) use wsloop::sys::ticks as now;
}

/// Tick rate, measured over a short sleep.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    per_us: f64,
}

impl Clock {
    pub(super) fn calibrate() -> Self {
        let (i0, t0) = (Instant::now(), ticks::now());
        std::thread::sleep(Duration::from_millis(20));
        let (i1, t1) = (Instant::now(), ticks::now());
        let us = i1.duration_since(i0).as_secs_f64() * 1e6;
        Self { per_us: (t1.wrapping_sub(t0) as f64 / us).max(1e-3) }
    }

    pub(super) fn ticks(&self, d: Duration) -> u64 {
        (d.as_secs_f64() * 1e6 * self.per_us) as u64
    }

    pub(super) fn micros(&self, ticks: u64) -> u64 {
        (ticks as f64 / self.per_us).round() as u64
    }

    pub(super) fn duration(&self, ticks: u64) -> Duration {
        Duration::from_secs_f64(ticks as f64 / self.per_us / 1e6)
    }
}
