//! The wit-bindgen guest bindings of the contract (`wit/since_v0.1.0`, world `plugin`).
//! Private to the SDK: authors use the curated types and helpers, never these.

// wit-bindgen lowers and lifts values across the component ABI with raw pointers, so the code it
// generates is full of `unsafe` blocks and `#[unsafe(export_name)]` functions. It is machine-made
// from the WIT file and checked by wit-bindgen's own test suite; nothing hand-written here is unsafe.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    world: "plugin",
    path: "../wit/since_v0.1.0",
    // The export macro is expanded in the plugin's crate by `register_provider!`, which is
    // also where wit-bindgen then puts the custom section describing the exports.
    pub_export_macro: true,
    export_macro_name: "__export_plugin",
    default_bindings_module: "imageai_sdk::bindings",
});
