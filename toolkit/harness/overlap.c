/* The race pass's scheduling shim: loaded (LD_PRELOAD) into a worker that runs under valgrind.
 *
 * A happens-before detector reports two accesses only when nothing orders them. Under the GIL,
 * every hand-over of the GIL orders the threads, so two calls into a library are unordered only
 * while both threads are between releasing the GIL (PyEval_SaveThread) and taking it back
 * (PyEval_RestoreThread) at the same time; valgrind runs one thread at a time and switches
 * rarely, so left alone that is rare. Through valgrind's function wrapping (any object that
 * defines PyEval_SaveThread: libpython, or a statically linked interpreter), this shim
 *
 *  - counts, per probe thread, its task calls, their GIL-released sections, the calls with a
 *    section that overlapped another probe thread's (unordered calls) and the overlapping pairs;
 *  - in "meet" mode, lets a thread that has just released the GIL yield to valgrind's scheduler
 *    (a few times per thread at most) until every probe thread has released it too, so that
 *    their sections overlap by design rather than by the luck of a thread switch.
 *
 * Neither adds ordering the detector could see: the shared counters are atomics the detectors do
 * not take as synchronisation, excluded from checking, and sched_yield is not a lock. The worker
 * marks its task calls (threadprobe_task). On thread exit each probe thread appends
 * "calls sections unordered-calls pairs×2" to $THREADPROBE_OVERLAP_DIR/overlap.<pid>.
 * THREADPROBE_OVERLAP=count|meet chooses the mode (count by default).
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <valgrind/drd.h>
#include <valgrind/helgrind.h>
#include <valgrind/valgrind.h>

#define MEET_YIELDS 4  /* per probe thread: the bound on a wait for the others */

static struct {
    long inside;   /* probe threads inside a GIL-released section of a task now */
    long entries;  /* such sections entered so far */
    long probes;   /* probe threads alive */
} shared;

static int meet = 0;
static __thread int registered = 0;
static __thread int in_task = 0, in_section = 0, task_unordered = 0;
static __thread long mark = 0;      /* `entries` just after this thread entered its section */
static __thread long others = 0;    /* other threads' sections this section overlapped */
static __thread long calls = 0, sections = 0, unordered = 0, pairs = 0;
static pthread_key_t at_exit;

static void report(void *unused) {
    (void)unused;
    __atomic_fetch_sub(&shared.probes, 1, __ATOMIC_SEQ_CST);
    const char *dir = getenv("THREADPROBE_OVERLAP_DIR");
    if (dir == NULL) return;
    char path[4096], line[96];
    snprintf(path, sizeof path, "%s/overlap.%d", dir, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    int n = snprintf(line, sizeof line, "%ld %ld %ld %ld\n", calls, sections, unordered, pairs);
    if (write(fd, line, (size_t)n) < 0) { /* nothing to do: the pass then says it was not counted */ }
    close(fd);
}

__attribute__((constructor)) static void setup(void) {
    VALGRIND_HG_DISABLE_CHECKING(&shared, sizeof shared);
    DRD_IGNORE_VAR(shared);
    pthread_key_create(&at_exit, report);
    const char *mode = getenv("THREADPROBE_OVERLAP");
    meet = mode != NULL && strcmp(mode, "meet") == 0;
}

/* Called by the harness's worker (with the GIL held) as each task call starts (1) and ends (0):
 * only the library's sections count, not the harness's own (hashing a result releases the GIL). */
void threadprobe_task(int on) {
    if (!registered) {
        registered = 1;
        __atomic_fetch_add(&shared.probes, 1, __ATOMIC_SEQ_CST);
        pthread_setspecific(at_exit, &shared);  /* any non-NULL value: the destructor runs */
    }
    if (on) {
        in_task = 1;
        task_unordered = 0;
        calls++;
    } else {
        in_task = 0;
        unordered += task_unordered;
    }
}

static void enter(void) {
    others = __atomic_fetch_add(&shared.inside, 1, __ATOMIC_SEQ_CST);
    mark = __atomic_add_fetch(&shared.entries, 1, __ATOMIC_SEQ_CST);
    in_section = 1;
    /* Wait for every other probe thread to be inside a section too, so that all of them
     * overlap: (T - 1) / 2 unordered pairs per call, not one pair per two calls. */
    long probes = __atomic_load_n(&shared.probes, __ATOMIC_SEQ_CST);
    for (long k = 0; meet && k < MEET_YIELDS * probes; k++) {
        if (__atomic_load_n(&shared.inside, __ATOMIC_SEQ_CST) >= probes) break;
        sched_yield();
    }
}

static void leave(void) {
    in_section = 0;
    /* Those inside when this one entered, and those that entered while it was inside: each
     * overlapping pair is counted once by each of its two sections. */
    others += __atomic_load_n(&shared.entries, __ATOMIC_SEQ_CST) - mark;
    __atomic_fetch_sub(&shared.inside, 1, __ATOMIC_SEQ_CST);
    sections++;
    pairs += others;
    task_unordered = task_unordered || others > 0;
}

void *I_WRAP_SONAME_FNNAME_ZU(Za, PyEval_SaveThread)(void);
void *I_WRAP_SONAME_FNNAME_ZU(Za, PyEval_SaveThread)(void) {
    OrigFn fn;
    void *state;
    VALGRIND_GET_ORIG_FN(fn);
    CALL_FN_W_v(state, fn);
    if (in_task) enter();
    return state;
}

void I_WRAP_SONAME_FNNAME_ZU(Za, PyEval_RestoreThread)(void *state);
void I_WRAP_SONAME_FNNAME_ZU(Za, PyEval_RestoreThread)(void *state) {
    OrigFn fn;
    VALGRIND_GET_ORIG_FN(fn);
    if (in_section) leave();
    CALL_FN_v_W(fn, state);
}
