//! Helper threads that wait for the few-rows products' parts by spinning, then sleep.
//!
//! A decoding step runs about 200 small products (7 per layer plus the LM head), each split
//! over the cores, with a few microseconds of single-threaded work between them. Rayon's
//! idle workers fall asleep within those gaps, so every split paid a futex wake-up on the
//! caller's side and a sleep on the worker's (about 13 % of a Q8 decoding profile on
//! SmolLM2, 2 threads). These helpers keep spinning for [`SPIN`] after each part, which
//! covers the gaps of a decoding step, and only then park.
//!
//! One caller at a time: a caller that finds the pool busy (another thread's product)
//! runs all its parts itself.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks.
const SPIN: Duration = Duration::from_micros(200);

/// The parts of one call, on the caller's stack while helpers may read it.
struct Job<'a> {
    part: &'a (dyn Fn(usize) + Sync),
    parts: usize,
    /// The next part not yet claimed.
    next: AtomicUsize,
    /// Parts finished (or panicked).
    finished: AtomicUsize,
    panicked: AtomicBool,
}

impl Job<'_> {
    /// Claims and runs parts until none is left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, SeqCst);
            if i >= self.parts {
                return;
            }
            if catch_unwind(AssertUnwindSafe(|| (self.part)(i))).is_err() {
                self.panicked.store(true, SeqCst);
            }
            self.finished.fetch_add(1, SeqCst);
        }
    }
}

struct Pool {
    /// The current job (`*const Job` with its lifetime erased), null between calls.
    job: AtomicPtr<()>,
    /// Bumped at every call: what idle helpers watch.
    epoch: AtomicUsize,
    /// Helpers between reading `job` and being done with it.
    active: AtomicUsize,
    /// Serialises callers.
    caller: Mutex<()>,
    helpers: Vec<Thread>,
}

static POOL: OnceLock<Pool> = OnceLock::new();

fn pool(threads: usize) -> &'static Pool {
    POOL.get_or_init(|| {
        let helpers = (1..threads)
            .map(|h| {
                std::thread::Builder::new()
                    .name(format!("few-rows-{h}"))
                    .spawn(helper)
                    .expect("spawn a few-rows helper thread")
                    .thread()
                    .clone()
            })
            .collect();
        Pool {
            job: AtomicPtr::new(core::ptr::null_mut()),
            epoch: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            caller: Mutex::new(()),
            helpers,
        }
    })
}

fn helper() {
    let pool = loop {
        if let Some(pool) = POOL.get() {
            break pool;
        }
        std::thread::yield_now();
    };
    let mut seen = pool.epoch.load(SeqCst);
    loop {
        let idle_since = Instant::now();
        let mut spins = 0u32;
        while pool.epoch.load(SeqCst) == seen {
            core::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && idle_since.elapsed() > SPIN {
                // A call that bumps the epoch after this check unparks this thread, and an
                // unpark before `park` makes it return at once.
                std::thread::park_timeout(Duration::from_millis(100));
            }
        }
        seen = pool.epoch.load(SeqCst);
        pool.active.fetch_add(1, SeqCst);
        let job = pool.job.load(SeqCst).cast_const().cast::<Job<'_>>();
        if !job.is_null() {
            // SAFETY: the caller keeps the job alive until `active` is back to zero after it
            // cleared `job` (see `run_parts`), and this thread counted itself in `active`
            // before reading the pointer.
            unsafe { (*job).work() };
        }
        pool.active.fetch_sub(1, SeqCst);
    }
}

/// Runs `part(0..parts)` over the calling thread and `threads - 1` helpers, and returns
/// when every part is done. Panics if a part panicked.
pub(crate) fn run_parts(threads: usize, parts: usize, part: &(dyn Fn(usize) + Sync)) {
    if threads <= 1 || parts <= 1 {
        (0..parts).for_each(part);
        return;
    }
    let pool = pool(threads);
    let Ok(_guard) = pool.caller.try_lock() else {
        (0..parts).for_each(part);
        return;
    };
    let job = Job {
        part,
        parts,
        next: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
    };
    pool.job.store((&job as *const Job<'_>).cast_mut().cast(), SeqCst);
    pool.epoch.fetch_add(1, SeqCst);
    for helper in &pool.helpers {
        helper.unpark();
    }
    job.work();
    wait_until(|| job.finished.load(SeqCst) == parts);
    pool.job.store(core::ptr::null_mut(), SeqCst);
    wait_until(|| pool.active.load(SeqCst) == 0);
    assert!(!job.panicked.load(SeqCst), "a part of a few-rows product panicked");
}

/// Spins until `done()`, yielding the core now and then: a helper still running a part may
/// be waiting for one (more runnable threads than cores, e.g. tests in parallel).
fn wait_until(done: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !done() {
        core::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) {
            std::thread::yield_now();
        }
    }
}
