use std::process::ExitCode;

fn main() -> ExitCode {
    cowtrace::cli::main()
}
