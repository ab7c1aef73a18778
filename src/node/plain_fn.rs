//! Functions registered as plain N-API callbacks instead of through
//! `#[napi]`, for the calls a worker makes on every `get` and `set`.
//!
//! napi-rs wraps each `#[napi]` function that takes arguments in a borrow
//! scope: an `Arc<Mutex<…>>` allocated, pushed on a thread-local stack and
//! released on every call, and a `CallbackInfo` built around the arguments.
//! Measured in a worker on a 100-byte GET of the mapped store, that came to
//! about 15 % of the native call. The arguments these functions take (numbers,
//! strings, Buffers) are converted and used within the call, so they need
//! none of it.

use std::ptr;

use napi::bindgen_prelude::{JsError, ToNapiValue};
use napi::{check_status, sys};

/// A function's body: its arguments (undefined where the caller passed
/// fewer) in, its return value out.
pub type Body<const N: usize> = unsafe fn(sys::napi_env, [sys::napi_value; N]) -> napi::Result<sys::napi_value>;

/// Runs `body` as the callback of a call: an `Err` is thrown into JS as a
/// `#[napi]` function throws it.
///
/// # Safety
/// `env` and `info` are those N-API passed the callback.
pub unsafe fn call<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    body: Body<N>,
) -> sys::napi_value {
    let mut argv = [ptr::null_mut(); N];
    let mut argc = N;
    // SAFETY: argv has room for argc values; N-API fills what the caller
    // left out with undefined.
    let result = unsafe {
        check_status!(sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), ptr::null_mut()))
            .and_then(|()| body(env, argv))
    };
    match result {
        Ok(value) => value,
        Err(error) => {
            // SAFETY: on the JS thread, inside the callback.
            unsafe { JsError::from(error).throw_into(env) };
            ptr::null_mut()
        }
    }
}

/// The callback N-API calls.
pub type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// Sets `exports[name]` to a function calling `callback`.
///
/// # Safety
/// `env` and `exports` are those of the module being registered.
pub unsafe fn export(env: sys::napi_env, exports: sys::napi_value, name: &str, callback: Callback) -> napi::Result<()> {
    let mut function = ptr::null_mut();
    // SAFETY: name is valid UTF-8 of the length given.
    unsafe {
        check_status!(sys::napi_create_function(
            env,
            name.as_ptr().cast(),
            name.len() as _,
            Some(callback),
            ptr::null_mut(),
            &mut function
        ))?;
        let key = <&str as ToNapiValue>::to_napi_value(env, name)?;
        check_status!(sys::napi_set_property(env, exports, key, function))
    }
}
