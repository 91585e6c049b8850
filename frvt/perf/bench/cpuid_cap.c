/* The CPUID cap of `frvt bench`, preloaded (LD_PRELOAD) into the avx2 group's measuring process.
 *
 * Linux's CPUID faulting (arch_prctl(ARCH_SET_CPUID, 0)) makes every CPUID instruction trap; the
 * SIGSEGV handler runs the real CPUID and clears the AVX-512, AMX, AVX-VNNI and AVX10 feature bits
 * of leaves 7 and 0x24 before returning, so every library that picks kernels from CPUID (MLAS,
 * oneDNN, OpenCV, OpenBLAS, numpy) sees an AVX2 + FMA CPU. Leaf 0xD (XSAVE sizes) is left alone so
 * that XSAVE buffers stay large enough; XCR0 (XGETBV) still shows the AVX-512 state enabled, which
 * no library uses without the CPUID bit. Libraries that install a SIGSEGV handler later (TVM's
 * crash reporter, Python's faulthandler) are chained behind this one (sigaction/signal are
 * interposed) instead of replacing it.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static struct sigaction previous;
static volatile long hits, leaf7_hits;
static volatile int active;
typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
static sigaction_fn real_sigaction_ptr;

static int real_sigaction(int signum, const struct sigaction *act, struct sigaction *oldact) {
    if (!real_sigaction_ptr) real_sigaction_ptr = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    return real_sigaction_ptr(signum, act, oldact);
}

/* Libraries that install their own SIGSEGV handler (crash reporters) are chained behind ours
   instead of replacing it: a CPUID executed after that would otherwise be fatal. */
int sigaction(int signum, const struct sigaction *act, struct sigaction *oldact) {
    if (signum == SIGSEGV && active) {
        struct sigaction old = previous;
        if (act) previous = *act;
        if (oldact) *oldact = old;
        return 0;
    }
    return real_sigaction(signum, act, oldact);
}

sighandler_t signal(int signum, sighandler_t handler_fn) {
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler_fn;
    sigemptyset(&act.sa_mask);
    act.sa_flags = SA_RESTART;
    if (sigaction(signum, &act, &old) != 0) return SIG_ERR;
    return old.sa_handler;
}

static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
}

static void mask(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (leaf == 7 && sub == 0) {
        r[1] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
        r[2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && sub == 1) {
        r[0] &= ~((1u << 4) | (1u << 5) | (1u << 21));
        r[3] &= ~(1u << 19);
    } else if (leaf == 0x24) {
        r[0] = r[1] = r[2] = r[3] = 0;
    }
}

static void handler(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = (ucontext_t *)context;
    greg_t *g = uc->uc_mcontext.gregs;
    if (info->si_code == SI_KERNEL) {
        const unsigned char *ip = (const unsigned char *)g[REG_RIP];
        if (ip[0] == 0x0F && ip[1] == 0xA2) {
            uint32_t r[4], leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX];
            real_cpuid(leaf, sub, r);
            mask(leaf, sub, r);
            g[REG_RAX] = r[0]; g[REG_RBX] = r[1]; g[REG_RCX] = r[2]; g[REG_RDX] = r[3];
            g[REG_RIP] += 2;
            hits++;
            if (leaf == 7) leaf7_hits++;
            return;
        }
    }
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction) { previous.sa_sigaction(sig, info, context); return; }
    } else if (previous.sa_handler == SIG_IGN) {
        return;
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler) {
        previous.sa_handler(sig); return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    active = 0;
    real_sigaction(sig, &dfl, NULL);  /* returning re-executes the faulting instruction: default action */
}

__attribute__((constructor)) static void frvt_cpuid_cap_init(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (real_sigaction(SIGSEGV, &sa, &previous) != 0) return;
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) { real_sigaction(SIGSEGV, &previous, NULL); return; }
    active = 1;
}

long frvt_cpuid_cap_hits(void) { return hits; }
long frvt_cpuid_cap_leaf7_hits(void) { return leaf7_hits; }
int frvt_cpuid_cap_active(void) {
    struct sigaction now;
    if (!active || real_sigaction(SIGSEGV, NULL, &now) != 0) return 0;
    return (now.sa_flags & SA_SIGINFO) && now.sa_sigaction == handler;
}
