//! The PAM module never loads NVML. NVML loads libcuda, which stays mapped
//! after `nvmlShutdown` and leaves a CUDA thread in the process (seen on a
//! real H200, docs/gpu-notes.md): inside sshd that thread would outlive the
//! hook. Session open takes the node's GPUs from procfs and /dev instead, so
//! the built module must not even name the library it would load: if a
//! change made the hooks reach `gpu::discover` or `gpu::usage`, the linker
//! would keep `Nvml::init` with the name it opens, and this fails. (Unused
//! nvml-wrapper code and its error texts may stay in a debug build; without
//! the library's name they load nothing.)
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[test]
fn the_module_cannot_load_nvml_or_cuda() {
    let module = diycloud_tests::module();
    let bytes = std::fs::read(&module).unwrap();
    for name in ["libnvidia-ml", "libcuda"] {
        assert!(
            !bytes.windows(name.len()).any(|w| w == name.as_bytes()),
            "{} contains {name}",
            module.display()
        );
    }
    // The same search finds the name where NVML is linked in: gpu_probe,
    // which uses it, has it (so the test above can fail).
    let bytes = std::fs::read(env!("CARGO_BIN_EXE_gpu_probe")).unwrap();
    assert!(bytes.windows(12).any(|w| w == b"libnvidia-ml"));
}

/// The REST server's stack stays out of the module (DESIGN §2); bench_api,
/// which runs the server, has it. tokio itself is in the module since the
/// PostgreSQL store: its client runs on a current-thread runtime that starts
/// no thread (slicectl/tests/cluster.rs counts the threads around a login).
#[test]
fn the_module_does_not_link_the_api_server() {
    let module = std::fs::read(diycloud_tests::module()).unwrap();
    let server = std::fs::read(env!("CARGO_BIN_EXE_bench_api")).unwrap();
    for name in ["axum", "hyper"] {
        let has = |bytes: &[u8]| bytes.windows(name.len()).any(|w| w == name.as_bytes());
        assert!(!has(&module), "the module contains {name}");
        assert!(has(&server), "bench_api should contain {name}");
    }
}
