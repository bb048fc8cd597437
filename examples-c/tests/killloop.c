/*
 * killloop.c: kill -9 during checkpoint writes. A reference run trains the tiny model for T
 * steps without interruption. Then a child process trains the same run, saving a checkpoint
 * after every step; the parent kills it with SIGKILL at random moments (after a random number
 * of completed steps, a random 0-20 ms later: inside a step or inside a checkpoint write), and
 * starts a new child that resumes from the checkpoint, until at least KILLS kills landed; the
 * last child runs to the end.
 * Checks: every resume loads the checkpoint (a killed write never leaves a corrupt file at the
 * path), the final checkpoint is byte-identical to the reference run's (resume is exact), and
 * no temporary file of a killed writer remains.
 *
 * usage: killloop TINY_MODEL.safetensors [KILLS (default 12)] [SEED]
 * Prints "KILLLOOP OK (<k> kills, <r> resumes)" on success.
 */
#define _GNU_SOURCE
#include <neco.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { TOTAL = 100, W = 40, H = 36, N = 4 };
static const char * tiny;
static char dir[256], run_path[300], ref_path[300];

static neco_trainer * make_trainer(neco_model ** model) {
    neco_model_params mp = neco_model_default_params();
    mp.n_heads = 4;
    if (neco_model_load(tiny, &mp, model) != NECO_OK) return NULL;
    static uint8_t px[N][W * H * 3];
    const uint8_t * images[N];
    int32_t hs[N], ws[N];
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < W * H * 3; k++) px[i][k] = (uint8_t)((k * (3 + i) + k / 120) % 253);
        images[i] = px[i];
        hs[i] = H;
        ws[i] = W;
    }
    neco_train_params p = neco_train_default_params();
    p.total_steps = TOTAL;
    p.batch_size = 2;
    p.global_size = 28;
    p.local_size = 14;
    p.roi_size = 2;
    p.queue_length = 64;
    p.head_hidden_dim = 32;
    p.head_out_dim = 16;
    p.seed = 9;
    neco_trainer * t = NULL;
    return neco_trainer_init_images(*model, images, hs, ws, N, &p, &t) == NECO_OK ? t : NULL;
}

/* Child: resume from run_path if it exists, then step + save to the end, writing one byte to
 * `notify` after each saved step. Exit 10: the checkpoint at the path did not load. */
static int child(int notify) {
    neco_model * m = NULL;
    neco_trainer * t = make_trainer(&m);
    if (!t) return 11;
    struct stat st;
    if (stat(run_path, &st) == 0) {
        if (neco_trainer_load_checkpoint(t, run_path) != NECO_OK) {
            fprintf(stderr, "killloop: resume failed: %s\n", neco_last_error());
            return 10;
        }
    }
    while (neco_trainer_step_count(t) < TOTAL) {
        if (neco_trainer_step(t, NULL) != NECO_OK) return 12;
        if (neco_trainer_save_checkpoint(t, run_path) != NECO_OK) return 13;
        if (write(notify, "s", 1) != 1) return 14;
    }
    neco_trainer_free(t);
    neco_model_free(m);
    return 0;
}

static unsigned char * read_file(const char * path, size_t * n) {
    FILE * f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char * b = malloc((size_t)len + 1);
    *n = b ? fread(b, 1, (size_t)len, f) : 0;
    fclose(f);
    return b;
}

int main(int argc, char ** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s TINY_MODEL [KILLS] [SEED]\n", argv[0]);
        return 2;
    }
    tiny = argv[1];
    const int want_kills = argc > 2 ? atoi(argv[2]) : 12;
    srand(argc > 3 ? (unsigned)atoi(argv[3]) : (unsigned)time(NULL));
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (neco_set_n_threads(1) != NECO_OK) return 2;
    snprintf(dir, sizeof dir, "%s/neco-killloop-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) return 2;
    snprintf(run_path, sizeof run_path, "%s/run.safetensors", dir);
    snprintf(ref_path, sizeof ref_path, "%s/ref.safetensors", dir);

    /* Reference: TOTAL steps in one go. */
    {
        neco_model * m = NULL;
        neco_trainer * t = make_trainer(&m);
        if (!t) {
            fprintf(stderr, "killloop: %s\n", neco_last_error());
            return 1;
        }
        while (neco_trainer_step_count(t) < TOTAL) {
            if (neco_trainer_step(t, NULL) != NECO_OK) return 1;
        }
        if (neco_trainer_save_checkpoint(t, ref_path) != NECO_OK) return 1;
        neco_trainer_free(t);
        neco_model_free(m);
    }

    int kills = 0, resumes = 0, finished = 0, in_write = 0, tmp_seen = 0;
    for (int round = 0; round < 1000 && !finished; round++) {
        int fds[2];
        if (pipe(fds) != 0) return 2;
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            _exit(child(fds[1]));
        }
        close(fds[1]);
        if (round > 0) resumes++;
        int killed = 0;
        if (kills < want_kills) {
            /* After 0-2 saved steps, a random 0-20 ms later. */
            int steps = rand() % 3;
            char c;
            int eof = 0;
            for (int s = 0; s < steps && !eof; s++) eof = read(fds[0], &c, 1) != 1;
            if (!eof) {
                struct timespec d = {0, (long)(rand() % 20000) * 1000L};
                nanosleep(&d, NULL);
                killed = kill(pid, SIGKILL) == 0;
            }
        }
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        close(fds[0]); /* after the child ended: its notices never meet a closed pipe */
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && killed) {
            kills++;
            /* A temporary file left behind: the kill landed inside a checkpoint write. */
            DIR * dd = opendir(dir);
            struct dirent * de;
            int tmp_now = 0;
            while (dd && (de = readdir(dd)) != NULL) tmp_now += strstr(de->d_name, ".tmp-") != NULL;
            if (dd) closedir(dd);
            if (tmp_now > tmp_seen) in_write++;
            tmp_seen = tmp_now;
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            finished = kills >= want_kills;
            if (!finished) unlink(run_path); /* ended before enough kills: start over */
        } else {
            fprintf(stderr, "killloop: child ended with %s %d\n", WIFSIGNALED(status) ? "signal" : "exit",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            return 1;
        }
    }
    if (!finished) {
        fprintf(stderr, "killloop: the run did not finish\n");
        return 1;
    }
    size_t na = 0, nb = 0;
    unsigned char * a = read_file(ref_path, &na);
    unsigned char * b = read_file(run_path, &nb);
    if (!a || !b || na != nb || memcmp(a, b, na) != 0) {
        fprintf(stderr, "killloop: the resumed run's final checkpoint differs from the reference\n");
        return 1;
    }
    int stray = 0;
    DIR * d = opendir(dir);
    struct dirent * e;
    while (d && (e = readdir(d)) != NULL) {
        if (strstr(e->d_name, ".tmp-") != NULL) {
            fprintf(stderr, "killloop: stray temporary %s\n", e->d_name);
            stray++;
        }
    }
    if (d) closedir(d);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    if (stray) return 1;
    printf("KILLLOOP OK (%d kills, %d of them inside a checkpoint write, %d resumes, final checkpoint identical "
           "to the uninterrupted run, no temporary file left)\n", kills, in_write, resumes);
    free(a);
    free(b);
    return 0;
}
