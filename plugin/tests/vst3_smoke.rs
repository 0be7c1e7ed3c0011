//! VST3 smoke test: the library's VST3 factory lists both plugins with their class info.

mod host;

use vst3::ComPtr;
use vst3::Steinberg::{IPluginFactory, IPluginFactoryTrait, PClassInfo, PFactoryInfo};

fn text(chars: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn the_vst3_factory_lists_cloak_and_sentinel() {
    let path = host::clap_path(); // the same shared library, which also exports VST3
                                  // SAFETY: our own plugin library; the symbols have the VST3 module signatures.
    unsafe {
        let lib = libloading::Library::new(&path).expect("loading the library");
        let entry: libloading::Symbol<unsafe extern "C" fn(*mut std::ffi::c_void) -> bool> =
            lib.get(b"ModuleEntry").expect("ModuleEntry");
        assert!(entry(std::ptr::null_mut()));
        let get_factory: libloading::Symbol<unsafe extern "C" fn() -> *mut IPluginFactory> =
            lib.get(b"GetPluginFactory").expect("GetPluginFactory");
        let factory = ComPtr::from_raw(get_factory()).expect("a factory");
        let mut info: PFactoryInfo = std::mem::zeroed();
        assert_eq!(
            factory.getFactoryInfo(&mut info),
            vst3::Steinberg::kResultOk
        );
        assert_eq!(text(&info.vendor), "advox");
        assert_eq!(factory.countClasses(), 2);
        let mut names = Vec::new();
        for i in 0..2 {
            let mut class: PClassInfo = std::mem::zeroed();
            assert_eq!(
                factory.getClassInfo(i, &mut class),
                vst3::Steinberg::kResultOk
            );
            assert_eq!(text(&class.category), "Audio Module Class");
            names.push(text(&class.name));
        }
        assert_eq!(names, ["advox Cloak", "advox Sentinel"]);
        drop(factory);
        let exit: libloading::Symbol<unsafe extern "C" fn() -> bool> =
            lib.get(b"ModuleExit").expect("ModuleExit");
        assert!(exit());
    }
}
