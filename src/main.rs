fn main() -> std::process::ExitCode {
    tanyi_relay::cli::main()
}
