//! Prints the RPCs the functions call, with the argument names they send, as
//! JSON: tests/e2e/rpc_contract.test.mjs holds them against the live database.

fn main() {
    let manifest = switchyard_shared::rpc::manifest();
    println!(
        "{}",
        serde_json::to_string_pretty(&manifest).expect("the manifest serialises")
    );
}
