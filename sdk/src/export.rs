//! The plugin side of the boundary: adapters from the author traits to the `#[sabi_trait]`
//! objects, with every call guarded so that no panic and no libtorch exception crosses
//! `extern "C"`. Used through [`crate::export_plugin!`].

use crate::component::{Architecture, Component, Dataset, Evaluator, Objective};
use crate::ffi::*;
use crate::host_view::{HostData, HostModel, Splits};
use crate::{ComponentKind, ComponentManifest, Config, CreateCtx, ErrorKind, PtError, Result, Tensors};
use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RErr, ROk, RResult, RSlice, RString, RVec, Tuple2},
};
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces this binary's panic hook with one that records the message instead of printing a
/// backtrace: the guard turns it into a one-line error that the host reports.
fn install_quiet_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
                s.to_string()
            } else if let Some(s) = info.payload().downcast_ref::<String>() {
                s.clone()
            } else {
                "unknown panic payload".to_string()
            };
            let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{}{place}", first_lines(&msg))));
        }));
    });
}

/// libtorch error texts carry a C++ backtrace after "Exception raised from"; keep the message.
/// tch's panicking methods (`unwrap` on a `TchError`) show it Debug-escaped on one line, so cut
/// at the marker itself rather than at a line.
fn first_lines(msg: &str) -> String {
    let head = msg.split("Exception raised from").next().unwrap_or(msg);
    let head = head.strip_prefix("called `Result::unwrap()` on an `Err` value: Torch(\"").unwrap_or(head);
    head.replace("\\n", "\n")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("frame #"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `f`, turning an error or a panic into a [`PtError`] that names `origin`.
pub fn guard<T>(origin: &str, f: impl FnOnce() -> Result<T>) -> RResult<T, PtError> {
    install_quiet_panic_hook();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => ROk(v),
        Ok(Err(e)) => RErr(e.with_origin(origin)),
        Err(_) => {
            let msg = LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| "panic".into());
            RErr(PtError::new(ErrorKind::Panic, format!("panicked: {msg}")).with_origin(origin))
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<RString> {
    Ok(serde_json::to_string(v).map_err(|e| PtError::new(ErrorKind::Other, e.to_string()))?.into())
}

fn named(v: Vec<(String, tch::Tensor)>) -> crate::TensorMap {
    v.into_iter().collect::<Tensors>().into_ffi()
}

pub fn manifest_of<C: Component>(kind: ComponentKind) -> ComponentManifest {
    ComponentManifest {
        kind,
        name: C::NAME.to_string(),
        about: C::ABOUT.to_string(),
        config: <C::Config as Config>::schema(),
        inputs: <C::Config as Config>::inputs(),
        provides: C::PROVIDES.iter().map(|p| p.to_string()).collect(),
        roles: C::ROLES.iter().map(|r| r.to_string()).collect(),
    }
}

/// Parses and validates a config for `C` without building it (the host's plan-time check).
pub fn check_component_config<P: PluginSpec, C: Component>(config: RStr) -> RResult<(), PtError> {
    let origin = origin_of::<P>(C::NAME);
    guard(&origin, || {
        <C::Config as Config>::check_json(config.as_str()).map_err(|e| e.context(format!("config of {}", C::NAME)))
    })
}

fn construct<C: Component>(origin: &str, config: RStr, ctx: RStr) -> RResult<C, PtError> {
    guard(origin, || {
        let cfg = <C::Config as Config>::from_json(config.as_str())
            .map_err(|e| e.context(format!("config of {}", C::NAME)))?;
        let ctx: CreateCtx =
            if ctx.as_str().trim().is_empty() { CreateCtx::default() } else { serde_json::from_str(ctx.as_str())? };
        C::new(cfg, &ctx)
    })
}
use abi_stable::std_types::RStr;

struct DatasetAdapter<D> {
    inner: D,
    origin: String,
}

impl<D: Dataset> DatasetFfi for DatasetAdapter<D> {
    fn info(&self) -> RResult<RString, PtError> {
        guard(&self.origin, || to_json(&self.inner.info()))
    }
    fn get_batch(&self, indices: RSlice<'_, u64>, ctx: &StepCtx) -> RResult<crate::TensorMap, PtError> {
        guard(&self.origin, || Ok(self.inner.get_batch(indices.as_slice(), ctx)?.into_ffi()))
    }
}

struct ArchitectureAdapter<A> {
    inner: A,
    origin: String,
}

impl<A: Architecture> ArchitectureFfi for ArchitectureAdapter<A> {
    fn info(&self) -> RResult<RString, PtError> {
        guard(&self.origin, || to_json(&self.inner.info()))
    }
    fn parameters(&self) -> RResult<crate::TensorMap, PtError> {
        guard(&self.origin, || Ok(named(self.inner.parameters())))
    }
    fn buffers(&self) -> RResult<crate::TensorMap, PtError> {
        guard(&self.origin, || Ok(named(self.inner.buffers())))
    }
    fn set_train(&mut self, train: bool) -> RResult<(), PtError> {
        let origin = self.origin.clone();
        guard(&origin, || {
            self.inner.set_train(train);
            Ok(())
        })
    }
    fn forward(&self, inputs: &crate::TensorMap, ctx: &StepCtx) -> RResult<crate::TensorMap, PtError> {
        guard(&self.origin, || Ok(self.inner.forward(&Tensors::share_ffi(inputs), ctx)?.into_ffi()))
    }
}

struct ObjectiveAdapter<O> {
    inner: O,
    origin: String,
}

impl<O: Objective> ObjectiveFfi for ObjectiveAdapter<O> {
    fn info(&self) -> RResult<RString, PtError> {
        guard(&self.origin, || to_json(&self.inner.info()))
    }
    fn parameters(&self) -> RResult<crate::TensorMap, PtError> {
        guard(&self.origin, || Ok(named(self.inner.parameters())))
    }
    fn buffers(&self) -> RResult<crate::TensorMap, PtError> {
        guard(&self.origin, || Ok(named(self.inner.buffers())))
    }
    fn set_train(&mut self, train: bool) -> RResult<(), PtError> {
        let origin = self.origin.clone();
        guard(&origin, || {
            self.inner.set_train(train);
            Ok(())
        })
    }
    fn prepare(&self, batch: crate::TensorMap, ctx: &StepCtx) -> RResult<crate::TensorMap, PtError> {
        guard(&self.origin, || Ok(self.inner.prepare(Tensors::from_ffi(batch), ctx)?.into_ffi()))
    }
    fn loss(
        &self,
        batch: &crate::TensorMap,
        outputs: &crate::TensorMap,
        ctx: &StepCtx,
    ) -> RResult<crate::TensorMap, PtError> {
        guard(&self.origin, || {
            let out = self.inner.loss(&Tensors::share_ffi(batch), &Tensors::share_ffi(outputs), ctx)?;
            let mut map = Tensors::new().with("loss", out.loss);
            for (name, value) in out.metrics {
                map.insert(format!("metric/{name}"), value);
            }
            Ok(map.into_ffi())
        })
    }
    fn embed(&self, outputs: &crate::TensorMap, ctx: &StepCtx) -> RResult<crate::TensorMap, PtError> {
        guard(&self.origin, || Ok(self.inner.embed(&Tensors::share_ffi(outputs), ctx)?.into_ffi()))
    }
    fn next_stage(
        &self,
        stage: u32,
        inputs: &crate::TensorMap,
        outputs: &crate::TensorMap,
        ctx: &StepCtx,
    ) -> RResult<crate::TensorMap, PtError> {
        guard(&self.origin, || {
            let (i, o) = (Tensors::share_ffi(inputs), Tensors::share_ffi(outputs));
            Ok(self.inner.next_stage(stage as usize, &i, &o, ctx)?.into_ffi())
        })
    }
    fn draw_on_host(&self, batch: &crate::TensorMap, ctx: &StepCtx) -> RResult<crate::TensorMap, PtError> {
        guard(&self.origin, || Ok(self.inner.draw_on_host(&Tensors::share_ffi(batch), ctx)?.into_ffi()))
    }
}

struct EvaluatorAdapter<E> {
    inner: E,
    origin: String,
}

impl<E: Evaluator> EvaluatorFfi for EvaluatorAdapter<E> {
    fn info(&self) -> RResult<RString, PtError> {
        guard(&self.origin, || to_json(&self.inner.info()))
    }
    fn evaluate(
        &mut self,
        model: HostModelRef<'_>,
        splits: RVec<Tuple2<RString, HostDataRef<'_>>>,
        ctx: &StepCtx,
    ) -> RResult<RString, PtError> {
        let origin = self.origin.clone();
        guard(&origin, || {
            let model = HostModel::new(model);
            let splits = Splits::new(
                splits.into_iter().map(|Tuple2(name, data)| (name.into_string(), HostData::new(data))).collect(),
            );
            to_json(&self.inner.evaluate(&model, &splits, ctx)?)
        })
    }
}

/// What [`crate::export_plugin!`] generates for a plugin; the root module's functions are
/// instantiated from it.
pub trait PluginSpec: 'static {
    const NAME: &'static str;
    const VERSION: &'static str;
    fn components() -> Vec<ComponentManifest>;
    fn create_dataset(name: &str, config: RStr, ctx: RStr) -> Option<RResult<DatasetBox, PtError>>;
    fn create_architecture(name: &str, config: RStr, ctx: RStr) -> Option<RResult<ArchitectureBox, PtError>>;
    fn create_objective(name: &str, config: RStr, ctx: RStr) -> Option<RResult<ObjectiveBox, PtError>>;
    fn create_evaluator(name: &str, config: RStr, ctx: RStr) -> Option<RResult<EvaluatorBox, PtError>>;
    /// Parses and validates the config of component `name` of `kind` (None: no such component).
    fn check_config(kind: ComponentKind, name: &str, config: RStr) -> Option<RResult<(), PtError>>;
}

fn origin_of<P: PluginSpec>(name: &str) -> String {
    format!("{}:{}", P::NAME, name)
}

pub fn make_dataset<P: PluginSpec, D: Dataset>(config: RStr, ctx: RStr) -> RResult<DatasetBox, PtError> {
    let origin = origin_of::<P>(D::NAME);
    construct::<D>(&origin, config, ctx)
        .map(|inner| DatasetFfi_TO::from_value(DatasetAdapter { inner, origin }, TD_Opaque))
}

pub fn make_architecture<P: PluginSpec, A: Architecture>(config: RStr, ctx: RStr) -> RResult<ArchitectureBox, PtError> {
    let origin = origin_of::<P>(A::NAME);
    construct::<A>(&origin, config, ctx)
        .map(|inner| ArchitectureFfi_TO::from_value(ArchitectureAdapter { inner, origin }, TD_Opaque))
}

pub fn make_objective<P: PluginSpec, O: Objective>(config: RStr, ctx: RStr) -> RResult<ObjectiveBox, PtError> {
    let origin = origin_of::<P>(O::NAME);
    construct::<O>(&origin, config, ctx)
        .map(|inner| ObjectiveFfi_TO::from_value(ObjectiveAdapter { inner, origin }, TD_Opaque))
}

pub fn make_evaluator<P: PluginSpec, E: Evaluator>(config: RStr, ctx: RStr) -> RResult<EvaluatorBox, PtError> {
    let origin = origin_of::<P>(E::NAME);
    construct::<E>(&origin, config, ctx)
        .map(|inner| EvaluatorFfi_TO::from_value(EvaluatorAdapter { inner, origin }, TD_Opaque))
}

fn not_found<P: PluginSpec, T>(kind: ComponentKind, name: RStr) -> RResult<T, PtError> {
    RErr(PtError::config(format!("plugin '{}' has no {kind} called '{name}'", P::NAME)))
}

extern "C" fn manifest<P: PluginSpec>() -> RString {
    let m = crate::PluginManifest {
        name: P::NAME.to_string(),
        version: P::VERSION.to_string(),
        sdk_version: crate::SDK_VERSION.to_string(),
        tch_version: crate::TCH_VERSION.to_string(),
        libtorch_version: crate::LIBTORCH_VERSION.to_string(),
        components: P::components(),
    };
    // Serialising plain data cannot fail; an empty string would fail the host's handshake.
    serde_json::to_string(&m).unwrap_or_default().into()
}

extern "C" fn create_dataset<P: PluginSpec>(name: RStr, config: RStr, ctx: RStr) -> RResult<DatasetBox, PtError> {
    match catch_unwind(|| P::create_dataset(name.as_str(), config, ctx)) {
        Ok(Some(r)) => r,
        Ok(None) => not_found::<P, _>(ComponentKind::Dataset, name),
        Err(_) => RErr(PtError::new(ErrorKind::Panic, "panicked while creating a dataset")),
    }
}

extern "C" fn create_architecture<P: PluginSpec>(
    name: RStr,
    config: RStr,
    ctx: RStr,
) -> RResult<ArchitectureBox, PtError> {
    match catch_unwind(|| P::create_architecture(name.as_str(), config, ctx)) {
        Ok(Some(r)) => r,
        Ok(None) => not_found::<P, _>(ComponentKind::Architecture, name),
        Err(_) => RErr(PtError::new(ErrorKind::Panic, "panicked while creating an architecture")),
    }
}

extern "C" fn create_objective<P: PluginSpec>(name: RStr, config: RStr, ctx: RStr) -> RResult<ObjectiveBox, PtError> {
    match catch_unwind(|| P::create_objective(name.as_str(), config, ctx)) {
        Ok(Some(r)) => r,
        Ok(None) => not_found::<P, _>(ComponentKind::Objective, name),
        Err(_) => RErr(PtError::new(ErrorKind::Panic, "panicked while creating an objective")),
    }
}

extern "C" fn create_evaluator<P: PluginSpec>(name: RStr, config: RStr, ctx: RStr) -> RResult<EvaluatorBox, PtError> {
    match catch_unwind(|| P::create_evaluator(name.as_str(), config, ctx)) {
        Ok(Some(r)) => r,
        Ok(None) => not_found::<P, _>(ComponentKind::Evaluator, name),
        Err(_) => RErr(PtError::new(ErrorKind::Panic, "panicked while creating an evaluator")),
    }
}

extern "C" fn check_config<P: PluginSpec>(kind: u8, name: RStr, config: RStr) -> RResult<(), PtError> {
    let Some(kind) = ComponentKind::from_u8(kind) else {
        return RErr(PtError::config(format!("unknown component kind {kind}")));
    };
    match catch_unwind(|| P::check_config(kind, name.as_str(), config)) {
        Ok(Some(r)) => r,
        Ok(None) => not_found::<P, _>(kind, name),
        Err(_) => RErr(PtError::new(ErrorKind::Panic, "panicked while checking a config")),
    }
}

extern "C" fn live_handles() -> i64 {
    crate::live_handles()
}

/// The root module for plugin `P` (also usable in-process, e.g. for built-in components).
pub fn root_module<P: PluginSpec>() -> PluginModRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    PluginMod {
        manifest: manifest::<P>,
        create_dataset: create_dataset::<P>,
        create_architecture: create_architecture::<P>,
        create_objective: create_objective::<P>,
        create_evaluator: create_evaluator::<P>,
        live_handles,
        install_host: crate::host::install,
        check_config: check_config::<P>,
        install_logger: crate::log::install,
    }
    .leak_into_prefix()
}

/// Exports a plugin: its name and its components by kind. The plugin crate must be a `cdylib`.
///
/// ```ignore
/// pt_sdk::export_plugin! {
///     name: "denoise",
///     objectives: [Denoise],
/// }
/// ```
/// Defines the plugin's components (the [`PluginSpec`]) and `pt_plugin_root()` without exporting
/// the root-module symbol: for components compiled into a host (pt's built-ins) or tests.
/// Plugins use [`crate::export_plugin!`].
#[macro_export]
macro_rules! plugin_spec {
    (
        name: $name:literal
        $(, datasets: [$($ds:ty),* $(,)?])?
        $(, architectures: [$($ar:ty),* $(,)?])?
        $(, objectives: [$($ob:ty),* $(,)?])?
        $(, evaluators: [$($ev:ty),* $(,)?])?
        $(,)?
    ) => {
        #[doc(hidden)]
        pub struct __PtPluginSpec;

        impl $crate::export::PluginSpec for __PtPluginSpec {
            const NAME: &'static str = $name;
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
            fn components() -> Vec<$crate::ComponentManifest> {
                #[allow(unused_mut)]
                let mut v = Vec::new();
                $($( v.push($crate::export::manifest_of::<$ds>($crate::ComponentKind::Dataset)); )*)?
                $($( v.push($crate::export::manifest_of::<$ar>($crate::ComponentKind::Architecture)); )*)?
                $($( v.push($crate::export::manifest_of::<$ob>($crate::ComponentKind::Objective)); )*)?
                $($( v.push($crate::export::manifest_of::<$ev>($crate::ComponentKind::Evaluator)); )*)?
                v
            }
            #[allow(unused_variables)]
            fn create_dataset(name: &str, config: $crate::abi_stable::std_types::RStr, ctx: $crate::abi_stable::std_types::RStr)
                -> Option<$crate::abi_stable::std_types::RResult<$crate::ffi::DatasetBox, $crate::PtError>> {
                $($( if name == <$ds as $crate::Component>::NAME {
                    return Some($crate::export::make_dataset::<Self, $ds>(config, ctx));
                } )*)?
                None
            }
            #[allow(unused_variables)]
            fn create_architecture(name: &str, config: $crate::abi_stable::std_types::RStr, ctx: $crate::abi_stable::std_types::RStr)
                -> Option<$crate::abi_stable::std_types::RResult<$crate::ffi::ArchitectureBox, $crate::PtError>> {
                $($( if name == <$ar as $crate::Component>::NAME {
                    return Some($crate::export::make_architecture::<Self, $ar>(config, ctx));
                } )*)?
                None
            }
            #[allow(unused_variables)]
            fn create_objective(name: &str, config: $crate::abi_stable::std_types::RStr, ctx: $crate::abi_stable::std_types::RStr)
                -> Option<$crate::abi_stable::std_types::RResult<$crate::ffi::ObjectiveBox, $crate::PtError>> {
                $($( if name == <$ob as $crate::Component>::NAME {
                    return Some($crate::export::make_objective::<Self, $ob>(config, ctx));
                } )*)?
                None
            }
            #[allow(unused_variables)]
            fn create_evaluator(name: &str, config: $crate::abi_stable::std_types::RStr, ctx: $crate::abi_stable::std_types::RStr)
                -> Option<$crate::abi_stable::std_types::RResult<$crate::ffi::EvaluatorBox, $crate::PtError>> {
                $($( if name == <$ev as $crate::Component>::NAME {
                    return Some($crate::export::make_evaluator::<Self, $ev>(config, ctx));
                } )*)?
                None
            }
            #[allow(unused_variables)]
            fn check_config(kind: $crate::ComponentKind, name: &str, config: $crate::abi_stable::std_types::RStr)
                -> Option<$crate::abi_stable::std_types::RResult<(), $crate::PtError>> {
                $($( if kind == $crate::ComponentKind::Dataset && name == <$ds as $crate::Component>::NAME {
                    return Some($crate::export::check_component_config::<Self, $ds>(config));
                } )*)?
                $($( if kind == $crate::ComponentKind::Architecture && name == <$ar as $crate::Component>::NAME {
                    return Some($crate::export::check_component_config::<Self, $ar>(config));
                } )*)?
                $($( if kind == $crate::ComponentKind::Objective && name == <$ob as $crate::Component>::NAME {
                    return Some($crate::export::check_component_config::<Self, $ob>(config));
                } )*)?
                $($( if kind == $crate::ComponentKind::Evaluator && name == <$ev as $crate::Component>::NAME {
                    return Some($crate::export::check_component_config::<Self, $ev>(config));
                } )*)?
                None
            }
        }

        /// This plugin's root module, for in-process use (tests, built-ins).
        pub fn pt_plugin_root() -> $crate::ffi::PluginModRef {
            $crate::export::root_module::<__PtPluginSpec>()
        }
    };
}

/// Exports a plugin: its name and its components by kind. The plugin crate must be a `cdylib`.
///
/// ```ignore
/// pt_sdk::export_plugin! {
///     name: "denoise",
///     objectives: [Denoise],
/// }
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($($spec:tt)*) => {
        $crate::plugin_spec! { $($spec)* }

        #[doc(hidden)]
        pub extern "C" fn __pt_erased_root_module() -> $crate::abi_stable::library::RootModuleResult {
            $crate::abi_stable::library::__call_root_module_loader(pt_plugin_root)
        }

        // The symbol abi_stable's loader looks up (what `#[export_root_module]` emits).
        #[doc(hidden)]
        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        pub static __PT_LIB_HEADER: $crate::abi_stable::library::LibHeader = unsafe {
            $crate::abi_stable::library::LibHeader::from_constructor::<$crate::ffi::PluginModRef>(
                __pt_erased_root_module,
                $crate::abi_stable::library::CheckTypeLayout::Yes,
            )
        };
    };
}

#[cfg(test)]
mod tests {
    use super::first_lines;

    #[test]
    fn libtorch_backtrace_is_cut_from_plain_and_unwrap_panic_text() {
        let plain = "The size of tensor a (7) must match the size of tensor b (8)\nException raised from infer_size at x.cpp:1\nframe #0: f()";
        assert_eq!(first_lines(plain), "The size of tensor a (7) must match the size of tensor b (8)");
        let unwrapped = "called `Result::unwrap()` on an `Err` value: Torch(\"The size of tensor a (7) must match\\nException raised from infer_size\\nframe #0: f()\")";
        assert_eq!(first_lines(unwrapped), "The size of tensor a (7) must match");
        assert_eq!(first_lines("index out of bounds"), "index out of bounds");
    }
}
