//! The threads that serve client connections, in nginx's worker model: one
//! current-thread runtime per worker, each with its own connections and its own pool
//! to the app. A connection is handed to a worker once, when it is accepted; from then
//! on the connection, every request on it and the upstream connection each request
//! uses are polled on that worker's thread, so a proxied request wakes nothing on
//! another core.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The worker threads. Dropping this ends them: each runtime stops, and the
/// connections still on it are closed.
pub struct Workers {
    handles: Vec<Handle>,
    /// One sender per thread; a thread runs until its sender is dropped.
    _stop: Vec<oneshot::Sender<()>>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `count` worker threads (at least one), named `cognito-gate-worker-N`.
    pub fn start(count: usize) -> io::Result<Workers> {
        let count = count.max(1);
        let mut handles = Vec::with_capacity(count);
        let mut stops = Vec::with_capacity(count);
        for n in 0..count {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("cognito-gate-worker-{n}"))
                .spawn(move || {
                    // Spawned connections run while the thread waits here.
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
        }
        Ok(Workers {
            handles,
            _stop: stops,
            next: AtomicUsize::new(0),
        })
    }

    /// No threads of its own: connections are served on the runtime that accepts
    /// them (the admin listener's few probes, which must not queue behind clients).
    pub fn here() -> Workers {
        Workers {
            handles: Vec::new(),
            _stop: Vec::new(),
            next: AtomicUsize::new(0),
        }
    }

    /// How many handlers the accept loop (`server::serve`) needs: one per worker, or one
    /// for [`Workers::here`].
    pub fn count(&self) -> usize {
        self.handles.len().max(1)
    }

    /// `handler` once per worker, for a handler that holds nothing of one thread's.
    pub fn each<H: Clone>(&self, handler: H) -> Vec<H> {
        vec![handler; self.count()]
    }

    /// A handler of its own for each worker, made by `make` (a proxy with its own pool
    /// of connections to the app).
    pub fn each_with<H>(&self, make: impl FnMut() -> H) -> Vec<H> {
        std::iter::repeat_with(make).take(self.count()).collect()
    }

    /// The worker the next connection goes to, in turn: with long-lived keep-alive
    /// connections, turns spread the load evenly where "whoever accepts first" would
    /// not.
    pub fn next(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.count()
    }

    /// Runs `task` on worker `index` (on the calling runtime for [`Workers::here`]).
    pub fn spawn<F>(&self, index: usize, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self.handles.get(index) {
            Some(handle) => drop(handle.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }
}

/// The default number of workers: one per CPU the process may use (cgroup quotas
/// included, as `std::thread::available_parallelism` reads them).
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_to_each_worker_in_turn_on_its_own_thread() {
        let workers = Workers::start(3).expect("threads start");
        assert_eq!(workers.count(), 3);
        // A proxy per worker: three made, not one shared.
        let mut made = 0;
        let handlers = workers.each_with(|| {
            made += 1;
            made
        });
        assert_eq!(handlers, [1, 2, 3]);
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..6 {
            let index = workers.next();
            let tx = tx.clone();
            workers.spawn(index, async move {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = tx.send((index, name));
            });
        }
        drop(tx);
        let mut seen: Vec<(usize, Option<String>)> = rx.iter().collect();
        seen.sort();
        let expected: Vec<(usize, Option<String>)> = [0, 0, 1, 1, 2, 2]
            .into_iter()
            .map(|i| (i, Some(format!("cognito-gate-worker-{i}"))))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn dropping_the_workers_ends_their_tasks() {
        let workers = Workers::start(1).expect("threads start");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        workers.spawn(0, async move {
            // Holds the sender until the runtime drops this task.
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(workers);
        // The sender goes with the task: the channel disconnects, rather than time out.
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(5)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
