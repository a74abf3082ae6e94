include!("../../build/libtorch_rpath.rs");
fn main() {
    libtorch_rpath();
}
