//! Denormal (subnormal) floats flushed to zero for the duration of a real-time call.
//!
//! A signal that fades to silence drives filter states, overlap-add tails and FFT bins into the
//! subnormal range, where x86 CPUs take a microcode assist per operation (tens to hundreds of
//! cycles): the plugins' `process()` then costs several times more exactly when a track goes
//! quiet (clap-validator measured 7.3–7.7× for Sentinel, 2.3× for Cloak). [`FlushDenormals`]
//! sets the CPU's flush-to-zero and denormals-are-zero modes (x86-64 MXCSR FTZ + DAZ, AArch64
//! FPCR FZ) and restores the caller's modes when dropped, so the host's own code is unaffected.
//! Values this small (< 1.2e-38) are inaudible and below every threshold the processing uses.

/// While alive, subnormal results and operands are treated as zero on this thread.
#[must_use = "the modes are restored when the guard is dropped"]
pub struct FlushDenormals {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    saved: u64,
}

#[cfg(target_arch = "x86_64")]
mod imp {
    /// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6).
    const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

    pub(super) fn read() -> u32 {
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr stores the 32-bit MXCSR to the given address (SSE is part of
        // x86-64); it touches no other state.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags))
        };
        csr
    }

    pub(super) fn write(csr: u32) {
        // SAFETY: ldmxcsr loads MXCSR from the given address; `csr` is a value read from
        // MXCSR with only the FTZ/DAZ bits changed, which every x86-64 CPU with SSE2 (DAZ:
        // all since the Pentium 4) supports.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly, preserves_flags))
        };
    }

    pub(super) fn enter() -> u64 {
        let saved = read();
        write(saved | FTZ_DAZ);
        u64::from(saved)
    }

    pub(super) fn leave(saved: u64) {
        write(saved as u32);
    }

    pub(super) fn active() -> bool {
        read() & FTZ_DAZ == FTZ_DAZ
    }
}

#[cfg(target_arch = "aarch64")]
mod imp {
    /// FPCR's flush-to-zero bit (FZ, bit 24), which also flushes subnormal inputs.
    const FZ: u64 = 1 << 24;

    fn read() -> u64 {
        let fpcr: u64;
        // SAFETY: reading FPCR has no side effects.
        unsafe { std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack)) };
        fpcr
    }

    fn write(fpcr: u64) {
        // SAFETY: writes FPCR with only the FZ bit changed from a value read from it.
        unsafe { std::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack)) };
    }

    pub(super) fn enter() -> u64 {
        let saved = read();
        write(saved | FZ);
        saved
    }

    pub(super) fn leave(saved: u64) {
        write(saved);
    }

    pub(super) fn active() -> bool {
        read() & FZ == FZ
    }
}

impl FlushDenormals {
    /// Flush denormals to zero on this thread until the guard is dropped.
    #[inline]
    pub fn new() -> Self {
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        {
            FlushDenormals {
                saved: imp::enter(),
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            FlushDenormals {}
        }
    }

    /// Whether this thread flushes denormals now (a guard is alive, or the host set the modes).
    pub fn active() -> bool {
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        {
            imp::active()
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            false
        }
    }
}

impl Default for FlushDenormals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlushDenormals {
    #[inline]
    fn drop(&mut self) {
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        imp::leave(self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnormals_flush_inside_the_guard_and_the_modes_come_back_after_it() {
        let before = FlushDenormals::active();
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        // Outside: halving the smallest normal gives a subnormal.
        assert!(!before, "the test thread starts without flush-to-zero");
        assert!((tiny * 0.5).is_subnormal());
        {
            let _guard = FlushDenormals::new();
            assert!(FlushDenormals::active());
            let half = std::hint::black_box(tiny) * std::hint::black_box(0.5f32);
            assert_eq!(half, 0.0, "flush-to-zero");
            let sub = std::hint::black_box(f32::from_bits(1));
            assert_eq!(sub * 1.0e30, 0.0, "denormals-are-zero");
            {
                let _nested = FlushDenormals::new();
                assert!(FlushDenormals::active());
            }
            assert!(
                FlushDenormals::active(),
                "a nested guard restores what it found"
            );
        }
        assert_eq!(FlushDenormals::active(), before);
        assert!((std::hint::black_box(tiny) * 0.5).is_subnormal());
    }
}
