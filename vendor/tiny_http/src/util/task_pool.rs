use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Manages a collection of threads.
///
/// A new thread is created every time all the existing threads are full.
/// Any idle thread will automatically die after a few seconds.
pub struct TaskPool {
    sharing: Arc<Sharing>,
    // (patch) stack size of worker threads; `None` for the platform default
    stack_size: Option<usize>,
    // (patch) name of the pool's threads
    name: String,
}

struct Sharing {
    // list of the tasks to be done by worker threads
    todo: Mutex<VecDeque<Box<dyn FnMut() + Send>>>,

    // condvar that will be notified whenever a task is added to `todo`
    condvar: Condvar,

    // number of total worker threads running
    active_tasks: AtomicUsize,

    // number of idle worker threads
    waiting_tasks: AtomicUsize,

    // (patch) set when the pool is closed: idle threads end at once instead of after 5 s
    closed: AtomicBool,

    // (patch) the pool's threads, so they can be joined; finished ones are pruned on spawn
    handles: Mutex<Vec<JoinHandle<()>>>,
}

/// Minimum number of active threads.
static MIN_THREADS: usize = 4;

struct Registration<'a> {
    nb: &'a AtomicUsize,
}

impl<'a> Registration<'a> {
    fn new(nb: &'a AtomicUsize) -> Registration<'a> {
        nb.fetch_add(1, Ordering::Release);
        Registration { nb }
    }
}

impl<'a> Drop for Registration<'a> {
    fn drop(&mut self) {
        self.nb.fetch_sub(1, Ordering::Release);
    }
}

impl TaskPool {
    /// (patch) A pool whose threads get `stack_size` bytes of stack and are called `name`.
    pub fn with_stack_size(stack_size: Option<usize>, name: String) -> TaskPool {
        let pool = TaskPool {
            stack_size,
            name,
            sharing: Arc::new(Sharing {
                todo: Mutex::new(VecDeque::new()),
                condvar: Condvar::new(),
                active_tasks: AtomicUsize::new(0),
                waiting_tasks: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                handles: Mutex::new(Vec::new()),
            }),
        };

        for _ in 0..MIN_THREADS {
            pool.add_thread(None)
        }

        pool
    }

    /// Executes a function in a thread.
    /// If no thread is available, spawns a new one.
    pub fn spawn(&self, code: Box<dyn FnMut() + Send>) {
        let mut queue = self.sharing.todo.lock().unwrap();

        // (patch) A waiting thread stays counted in `waiting_tasks` until it has re-taken the
        // lock, so threads already woken for queued tasks must not be counted again: with
        // `== 0` a burst of connections could be queued behind long-lived ones and never read.
        if self.sharing.waiting_tasks.load(Ordering::Acquire) <= queue.len() {
            self.add_thread(Some(code));
        } else {
            queue.push_back(code);
            self.sharing.condvar.notify_one();
        }
    }

    fn add_thread(&self, initial_fn: Option<Box<dyn FnMut() + Send>>) {
        let sharing = self.sharing.clone();
        let mut builder = thread::Builder::new().name(self.name.clone());
        if let Some(size) = self.stack_size {
            builder = builder.stack_size(size);
        }

        // (patch) A failed spawn (thread limit, memory) drops the task, closing its connection,
        // instead of panicking the accept loop.
        let spawned = builder.spawn(move || {
            let sharing = sharing;
            let _active_guard = Registration::new(&sharing.active_tasks);

            if let Some(mut f) = initial_fn {
                f();
            }

            loop {
                let mut task: Box<dyn FnMut() + Send> = {
                    let mut todo = sharing.todo.lock().unwrap();

                    let task;
                    loop {
                        if let Some(poped_task) = todo.pop_front() {
                            task = poped_task;
                            break;
                        }
                        // (patch) a closed pool's idle threads end
                        if sharing.closed.load(Ordering::Acquire) {
                            return;
                        }
                        let _waiting_guard = Registration::new(&sharing.waiting_tasks);

                        let received =
                            if sharing.active_tasks.load(Ordering::Acquire) <= MIN_THREADS {
                                todo = sharing.condvar.wait(todo).unwrap();
                                true
                            } else {
                                let (new_lock, waitres) = sharing
                                    .condvar
                                    .wait_timeout(todo, Duration::from_millis(5000))
                                    .unwrap();
                                todo = new_lock;
                                !waitres.timed_out()
                            };

                        if !received && todo.is_empty() {
                            return;
                        }
                    }

                    task
                };

                task();
            }
        });
        match spawned {
            Ok(handle) => {
                let mut handles = self.sharing.handles.lock().unwrap_or_else(|p| p.into_inner());
                handles.retain(|h| !h.is_finished());
                handles.push(handle);
            }
            Err(e) => log::error!("cannot start a connection thread: {}", e),
        }
    }

    /// (patch) Closes the pool: idle threads end now, busy ones when their task returns.
    pub fn close(&self) {
        // Under the queue's lock, so no thread is between its check and its wait.
        let _todo = self.sharing.todo.lock().unwrap_or_else(|p| p.into_inner());
        self.sharing.closed.store(true, Ordering::Release);
        self.sharing.condvar.notify_all();
    }

    /// (patch) Waits until every thread of the closed pool has ended, at most until
    /// `deadline`, and joins those that have; returns how many are still running (kept, so a
    /// later call can join them).
    pub fn join(&self, deadline: Instant) -> usize {
        let mut handles = self.sharing.handles.lock().unwrap_or_else(|p| p.into_inner());
        while handles.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
            drop(handles);
            thread::sleep(Duration::from_millis(1));
            handles = self.sharing.handles.lock().unwrap_or_else(|p| p.into_inner());
        }
        let (done, running): (Vec<_>, Vec<_>) = handles.drain(..).partition(|h| h.is_finished());
        *handles = running;
        drop(handles);
        for handle in done {
            let _ = handle.join();
        }
        self.sharing.handles.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        // (patch) upstream made idle threads wait 5 s more; a closed pool's end at once
        self.close();
    }
}
