//! One Debian template for every test that needs disposables, built once
//! through the libraries and kept between runs of the tests.

use std::sync::OnceLock;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::{Layout, Registry};
use kvmx_provision::{ImagePolicy, Silent, StopOptions, UpOptions, Vm};

use crate::shared_cache;

/// The template's name.
pub(crate) const TEMPLATE: &str = "gitlab-tmpl";

/// The kvmx home (its `kvmx/` folder is `KVMX_HOME`) holding the template,
/// built again only when its file changed or its build did not finish.
pub(crate) fn template_home() -> &'static Utf8Path {
    static HOME: OnceLock<Utf8PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = Utf8Path::new(env!("CARGO_TARGET_TMPDIR")).join("gitlab-home");
        let project = home.join("projects").join(TEMPLATE);
        let config = "[hardware]\nmemory = \"1G\"\ncpus = 2\naccelerator = \"tcg\"\n\n\
                      [image]\nsize = \"3G\"\n\n[supervise]\nboot_timeout = 900\n";
        let ready = home.join("template-ready");
        let same = std::fs::read_to_string(project.join("kvmx.toml")).is_ok_and(|t| t == config);
        if same && ready.exists() {
            return home;
        }
        if home.exists() {
            std::fs::remove_dir_all(&home).expect("remove the old kvmx home");
        }
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("kvmx.toml"), config).unwrap();
        let layout = layout(&home);
        Registry::register(&layout, TEMPLATE, &project, false).expect("register the template");
        let template = Vm::find(&layout, Some(TEMPLATE), &project)
            .expect("open the template")
            .vm;
        template
            .up_with(&UpOptions::new().image(ImagePolicy::Build), &mut Silent)
            .expect("build and boot the template");
        template
            .stop_with(&StopOptions::new(), &mut Silent)
            .expect("stop the template");
        std::fs::write(&ready, "").unwrap();
        home
    })
}

/// The layout of the template's home.
pub(crate) fn layout(home: &Utf8Path) -> Layout {
    let mut layout = Layout::under(&home.join("kvmx"));
    layout.cache_dir = Utf8PathBuf::from_path_buf(shared_cache()).unwrap();
    layout
}
