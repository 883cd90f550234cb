fn main() -> std::process::ExitCode {
    haproxy_watchdog::cli::main()
}
