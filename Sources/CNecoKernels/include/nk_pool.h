/* nk_pool.h: libneco's worker pool: parallel regions with a low wake-up latency.
 *
 * Not public API. One process-wide pool of threads, created on first use (and again in a child
 * made by fork(), which has none of them). A region runs
 * task(ctx, w) for w = 0 ..< workers: w = 0 on the calling thread, the others on pool threads.
 * Between regions a pool thread spins for a short while (NECO_SPIN_US microseconds, default 50,
 * 0 = never), then sleeps on a condition variable; the back-to-back regions of a forward pass
 * therefore start without a kernel wake-up, while an idle process costs nothing.
 *
 * One region at a time: a call made while another thread's region runs, or from inside a region
 * (nesting), returns -1 without running anything, and the caller runs the work its own way.
 */
#ifndef NK_POOL_H
#define NK_POOL_H

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*nk_pool_task)(void *ctx, long worker);

/* Runs the region and returns 0 once every worker has returned; -1 when the pool is busy, the call
 * is nested, `workers` is outside 2...256, or a pool thread could not be started. */
int nk_pool_run(long workers, nk_pool_task task, void *ctx);

/* Claims the next chunk of [0, n) for a loop whose chunks go to whichever worker asks first
 * (guided self-scheduling), from the shared cursor *next (0 at the start, touched only through
 * this call). A chunk is a 1/(2 · workers) share of what is left, rounded up to a multiple of
 * `grain` (≥ 1) and never smaller than it, so chunks shrink as the range empties and the workers
 * finish close together even when one of them is slowed. Returns the chunk's start, with its end
 * in *end; n (and *end = n) when nothing is left. */
long nk_pool_claim(long *next, long n, long workers, long grain, long *end);

#ifdef __cplusplus
}
#endif

#endif
