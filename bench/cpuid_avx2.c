/* An AVX2-only CPU for one process: LD_PRELOAD this library and every library in the process (onnxruntime's MLAS,
 * oneDNN, MKL, torch's cpuinfo, numpy, glibc's later checks) reads a CPUID without AVX-512, AVX512-BF16/VNNI, AMX or
 * AVX-VNNI, so each takes its AVX2 code path, as on a Haswell-to-Zen3-class CPU.
 *
 * How: Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID 0; needs the `cpuid_fault` CPU flag) makes every CPUID
 * instruction raise SIGSEGV; the handler runs the real CPUID with faulting briefly off, clears the AVX-512-era bits of
 * leaf 7 and steps over the instruction. The setting is inherited by threads and forks and reset by execve; children
 * that exec keep LD_PRELOAD and so load this again. onnxruntime has no run-time switch to cap its instruction set
 * (MLAS dispatches on CPUID alone), which is why this works at the CPUID level. Used by bench_retrieval.py
 * --force-avx2; exits with status 70 where CPUID faulting is unavailable. Do not combine with Python's faulthandler
 * (it takes SIGSEGV over). */
#define _GNU_SOURCE
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define ARCH_SET_CPUID 0x1012

static void on_segv(int sig, siginfo_t *info, void *raw) {
    (void)sig;
    (void)info;
    ucontext_t *uc = raw;
    const uint8_t *rip = (const uint8_t *)uc->uc_mcontext.gregs[REG_RIP];
    if (rip[0] != 0x0f || rip[1] != 0xa2) { /* not CPUID: a real fault, fail as it would have */
        signal(SIGSEGV, SIG_DFL);
        return;
    }
    uint32_t leaf = (uint32_t)uc->uc_mcontext.gregs[REG_RAX], sub = (uint32_t)uc->uc_mcontext.gregs[REG_RCX];
    uint32_t a, b, c, d;
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    __cpuid_count(leaf, sub, a, b, c, d);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    if (leaf == 7 && sub == 0) {
        /* EBX: AVX512 F, DQ, IFMA, PF, ER, CD, BW, VL; ECX: VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ;
         * EDX: 4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512-FP16, AMX-TILE, AMX-INT8 */
        b &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
        c &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        d &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && sub == 1) {
        /* EAX: AVX-VNNI, AVX512-BF16, AVX-IFMA; EDX: AVX-VNNI-INT8, AVX-NE-CONVERT */
        a &= ~((1u << 4) | (1u << 5) | (1u << 23));
        d &= ~((1u << 4) | (1u << 5));
    }
    uc->uc_mcontext.gregs[REG_RAX] = a;
    uc->uc_mcontext.gregs[REG_RBX] = b;
    uc->uc_mcontext.gregs[REG_RCX] = c;
    uc->uc_mcontext.gregs[REG_RDX] = d;
    uc->uc_mcontext.gregs[REG_RIP] += 2;
}

__attribute__((constructor)) static void install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &action, NULL);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr, "cpuid_avx2: CPUID faulting is not available here (no cpuid_fault flag): cannot force AVX2\n");
        _exit(70);
    }
}
