//! Prints an argon2id PHC hash for a password read from standard input, ready
//! for a line of the users file (`username:HASH`).
//!
//! ```sh
//! printf '%s' 'correct horse battery staple' | cargo run --example hash_password
//! ```
//!
//! The password is read from stdin, not from an argument, so it does not land
//! in your shell history or in the process list.

use std::io::Read;

fn main() -> std::io::Result<()> {
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.strip_suffix('\n').unwrap_or(&password);
    if password.is_empty() {
        eprintln!("error: empty password on standard input");
        std::process::exit(2);
    }
    println!("{}", login_metrics::auth::hash_password(password));
    Ok(())
}
