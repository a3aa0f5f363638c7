//! Opt-in process-wide settings for programs: the CLI, the examples and the benchmarks call
//! [`setup`]; the library itself never changes the process behind an app's back.
//!
//! glibc's `malloc` serves every block above 128 KiB (a dynamic threshold, up to 32 MiB) with a
//! fresh `mmap` and unmaps it on `free`, and trims the heap top above 128 KiB; the CPU backend
//! allocates each op's output anew, so every forward pass faults in and zeroes its tensors' pages
//! again (10 % of the VMAE encode in a profile). [`keep_freed_buffers`] makes freed buffers
//! reusable instead: 1.2–1.4× faster VMAE / DiT forwards on the CPU, 1.15× more for the DiT at
//! batch 2 (whose 34 MB SwiGLU buffers are beyond any mmap threshold), the same peak memory
//! within the run-to-run spread (docs/performance.md).

/// Serves every block from the heap instead of `mmap` and raises the trim threshold to 128 MiB,
/// so that tensor buffers freed by one op serve the next. The cost: memory freed below the heap
/// top stays with the process (for reuse) instead of going back to the system. Process-wide;
/// call once at start-up. Does nothing on other C libraries (musl, Apple, Android's bionic,
/// Windows).
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; glibc takes its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

/// Points `XDG_RUNTIME_DIR` at the temporary directory when it is unset (a headless machine), so
/// that looking for a GPU does not make Mesa's Vulkan driver print `error: XDG_RUNTIME_DIR is
/// invalid or not set` before a normal CPU run (it finds no display server there, silently).
/// Call at start-up, before any thread is started.
pub fn quiet_gpu_probe() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: called at start-up, while the program has a single thread.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
}

/// Both settings: [`keep_freed_buffers`] and [`quiet_gpu_probe`]. Call first thing in `main`.
pub fn setup() {
    keep_freed_buffers();
    quiet_gpu_probe();
}
