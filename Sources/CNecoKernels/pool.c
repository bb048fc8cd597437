/* pool.c: see nk_pool.h. */
#include "nk_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ volatile("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

enum { MAX_WORKERS = 256 };

static pthread_mutex_t region_lock = PTHREAD_MUTEX_INITIALIZER; /* one region at a time */
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static _Atomic unsigned long generation;  /* bumped to start a region */
static _Atomic long pending;              /* pool threads yet to finish the current region */
static _Atomic long sleepers;             /* pool threads waiting on `wake` */
static long started;                      /* pool threads created (under region_lock) */
static nk_pool_task job_task;             /* the current region, written before `generation` */
static void *job_ctx;
static long job_workers;
static long spin_ns = -1;
static unsigned long created_at[MAX_WORKERS]; /* `generation` when each pool thread was made */
static _Thread_local int inside;          /* this thread is running a region's task */

/* A child made by fork() has none of the pool threads: start from scratch there (a host that
 * forks workers after using libneco, as Python's multiprocessing does, would otherwise wait for
 * threads that do not exist). */
static void after_fork_in_child(void) {
    pthread_mutex_init(&region_lock, NULL);
    pthread_mutex_init(&sleep_lock, NULL);
    pthread_cond_init(&wake, NULL);
    atomic_store(&pending, 0);
    atomic_store(&sleepers, 0);
    started = 0;
    inside = 0;
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void register_fork_handler(void) { pthread_atfork(NULL, NULL, after_fork_in_child); }

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

static void *pool_thread(void *arg) {
    const long me = (long)(size_t)arg;
    unsigned long seen = created_at[me]; /* the region that made this thread is the next one */
    inside = 1; /* a task that calls nk_pool_run from a pool thread runs its work inline */
    for (;;) {
        /* Wait for the next region: spin first, then sleep. */
        unsigned long g = atomic_load_explicit(&generation, memory_order_acquire);
        if (g == seen && spin_ns > 0) {
            const long until = now_ns() + spin_ns;
            for (int i = 0; (g = atomic_load_explicit(&generation, memory_order_acquire)) == seen; i++) {
                CPU_RELAX();
                if ((i & 63) == 63 && now_ns() > until) break;
            }
        }
        if (g == seen) {
            pthread_mutex_lock(&sleep_lock);
            atomic_fetch_add(&sleepers, 1);
            while ((g = atomic_load(&generation)) == seen) pthread_cond_wait(&wake, &sleep_lock);
            atomic_fetch_sub(&sleepers, 1);
            pthread_mutex_unlock(&sleep_lock);
        }
        seen = g;
        if (me < job_workers) job_task(job_ctx, me);
        /* Every pool thread acknowledges every region, so none can still be reading this
         * region's job when the next one is written. */
        atomic_fetch_sub_explicit(&pending, 1, memory_order_release);
    }
    return NULL;
}

int nk_pool_run(long workers, nk_pool_task task, void *ctx) {
    if (workers < 2 || workers > MAX_WORKERS || inside) return -1;
    if (pthread_mutex_trylock(&region_lock) != 0) return -1;
    if (spin_ns < 0) {
        const char *s = getenv("NECO_SPIN_US");
        long us = s && *s ? strtol(s, NULL, 10) : 50;
        spin_ns = (us < 0 ? 0 : us > 100000 ? 100000 : us) * 1000;
    }
    while (started < workers - 1) {
        /* Before the first thread exists (not on every region): a fork after it restarts the pool. */
        pthread_once(&fork_once, register_fork_handler);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        created_at[started + 1] = atomic_load(&generation);
        const int rc = pthread_create(&t, &attr, pool_thread, (void *)(size_t)(started + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            pthread_mutex_unlock(&region_lock);
            return -1;
        }
        started++;
    }
    job_task = task;
    job_ctx = ctx;
    job_workers = workers;
    /* Every started thread passes through each region; those beyond `workers` only acknowledge. */
    atomic_store(&pending, started);
    atomic_fetch_add(&generation, 1); /* seq_cst: ordered before the read of `sleepers` below */
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&sleep_lock);
    }
    inside = 1;
    task(ctx, 0);
    inside = 0;
    for (int i = 0; atomic_load_explicit(&pending, memory_order_acquire) > 0; i++) {
        CPU_RELAX();
        if ((i & 1023) == 1023) sched_yield(); /* a descheduled worker: let it run */
    }
    pthread_mutex_unlock(&region_lock);
    return 0;
}

long nk_pool_claim(long *next, long n, long workers, long grain, long *end) {
    if (grain < 1) grain = 1;
    if (workers < 1) workers = 1;
    long start = __atomic_load_n(next, __ATOMIC_RELAXED);
    for (;;) {
        if (start >= n) {
            *end = n;
            return n;
        }
        long chunk = (n - start + 2 * workers - 1) / (2 * workers);
        chunk = (chunk + grain - 1) / grain * grain;
        const long stop = n - start <= chunk ? n : start + chunk;
        /* On failure `start` receives the cursor another worker moved. */
        if (__atomic_compare_exchange_n(next, &start, stop, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            *end = stop;
            return start;
        }
    }
}
