//! The tests of the embedding API (`oneloop_python::embed`)
//! are programs that link libpython; find it at run time where pyo3 found
//! it at build time (pyenv and venv interpreters keep it out of the
//! loader's default paths). The wheel's extension module links nothing.

fn main() {
    if let Some(dir) = pyo3_build_config::get().lib_dir() {
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{dir}");
    }
}
