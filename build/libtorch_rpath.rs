// Shared by every crate whose binaries (tests included) link tch: bake libtorch's lib folder
// into the RPATH so they run with no LD_LIBRARY_PATH, and force-link torch_cuda when it exists
// (rustc's --as-needed would otherwise drop it and CUDA would look unavailable).
// See ../shared/LIBTORCH.md. Included with `include!` from each crate's build.rs.
fn libtorch_rpath() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let root = std::env::var("LIBTORCH").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/m2ib/libtorch-2.13.0-cpu")
    });
    let lib = std::path::Path::new(&root).join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
    }
}
