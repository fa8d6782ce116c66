//! Golden tests of the QEMU command line: a dozen configs, and every real
//! legacy kvmxfile after import.

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::config::{self, Config};
use kvmx_core::layout::Layout;
use kvmx_provision::qemu::{Accel, ExtraDisk, KernelBoot, Launch, qemu_args};

const PROJECT: &str = "/projects/example";

fn resolved(config: Config) -> Config {
    let layout = Layout::under(Utf8Path::new("/kvmx"));
    config::resolve(
        config,
        Utf8Path::new(PROJECT),
        "example".parse().unwrap(),
        &layout,
    )
}

fn launch(accel: Accel, ssh_port: Option<u16>) -> Launch {
    let run = Utf8PathBuf::from("/kvmx/run/example");
    Launch {
        accel,
        ssh_port,
        kernel_boot: None,
        qmp_socket: run.join("qmp.sock"),
        serial_socket: run.join("serial.sock"),
        console_log: "/kvmx/data/example/console.log".into(),
        spice_socket: run.join("spice.sock"),
        vnc_socket: run.join("vnc.sock"),
        runtime_dir: run,
        memory_file: None,
        incoming: false,
        private_disk: None,
        extra_disks: Vec::new(),
        clock_pipe: None,
        install_cdrom: None,
        no_reboot: false,
    }
}

fn render(config: &Config, launch: &Launch) -> String {
    let args = qemu_args(config, launch);
    let mut out = String::from("qemu-system-x86_64");
    for arg in args {
        if arg.starts_with('-') {
            out.push_str(" \\\n  ");
        } else {
            out.push(' ');
        }
        out.push_str(&arg);
    }
    out.push('\n');
    out
}

fn toml(text: &str) -> Config {
    resolved(config::parse_toml(text, "kvmx.toml".into()).unwrap())
}

#[test]
fn defaults_under_tcg() {
    insta::assert_snapshot!(render(&toml(""), &launch(Accel::Tcg, Some(2222))));
}

#[test]
fn defaults_under_kvm() {
    insta::assert_snapshot!(render(&toml(""), &launch(Accel::Kvm, Some(2222))));
}

#[test]
fn hardware_and_devices() {
    let config = toml(
        "[hardware]\nmemory = \"4G\"\ncpus = 4\nmachine = \"q35\"\nusb = 3\nsound = \"hda\"\n\
         virtio_rng_max_bytes = 1024\nvirtio_rng_period_ms = 1000\nqemu_args = [\"-device\", \"usb-tablet\"]\n",
    );
    insta::assert_snapshot!(render(&config, &launch(Accel::Tcg, Some(2222))));
}

#[test]
fn raw_ide_without_discard_and_extra_drive_options() {
    let config = toml(
        "[image]\nformat = \"raw\"\ninterface = \"ide\"\ndiscard = false\ndrive_options = \"cache=none\"\npath = \"disk,1.img\"\n",
    );
    insta::assert_snapshot!(render(&config, &launch(Accel::Tcg, Some(2222))));
}

#[test]
fn live_cdrom_with_snapshot() {
    let config = toml(
        "[image]\nmedia = \"cdrom\"\npath = \"live.iso\"\ncdrom = \"extra.iso\"\nsnapshot = true\n",
    );
    insta::assert_snapshot!(render(&config, &launch(Accel::Tcg, Some(2222))));
}

#[test]
fn port_forwards() {
    let config = toml(
        "[network]\nforwards = [{ host = 8080, guest = 80 }, { host = 5353, guest = 53, protocol = \"udp\" }, { host = 9000, guest = 9000, address = \"0.0.0.0\" }]\n",
    );
    insta::assert_snapshot!(render(&config, &launch(Accel::Tcg, Some(2222))));
}

#[test]
fn tap_network_without_ssh_forward() {
    let config = toml("[network]\nmode = \"tap\"\naddress = \"10.1.1.2\"\n");
    insta::assert_snapshot!(render(&config, &launch(Accel::Tcg, None)));
}

#[test]
fn no_network() {
    let config = toml("[network]\nmode = \"none\"\n[ssh]\nenabled = false\n");
    insta::assert_snapshot!(render(&config, &launch(Accel::Tcg, None)));
}

#[test]
fn shares_by_9p_and_virtiofs() {
    let config = toml(
        "[[shares]]\nid = \"code\"\nhost = \".\"\nguest = \"/srv/code\"\nkind = \"9p\"\n\n\
         [[shares]]\nid = \"docs\"\nhost = \"/usr/share/doc\"\nguest = \"/srv/doc\"\nkind = \"9p\"\nread_only = true\n\n\
         [[shares]]\nid = \"back\"\nhost = \"mnt\"\nguest = \"/home/user\"\nkind = \"sshfs\"\n\n\
         [[shares]]\nid = \"fast\"\nhost = \"data\"\nguest = \"/srv/data\"\nkind = \"virtiofs\"\n",
    );
    insta::assert_snapshot!(render(&config, &launch(Accel::Tcg, Some(2222))));
}

#[test]
fn restricted_network_and_a_private_disk() {
    let config = toml("[network]\nrestrict = true\n");
    let mut launch = launch(Accel::Tcg, Some(2222));
    launch.private_disk = Some((
        "/kvmx/data/example/private.img".into(),
        "kvmx-private".into(),
    ));
    insta::assert_snapshot!(render(&config, &launch));
}

#[test]
fn a_builder_with_its_target_and_inputs() {
    let mut launch = launch(Accel::Tcg, Some(2222));
    launch.extra_disks = vec![
        ExtraDisk {
            path: "/kvmx/work/disk.raw".into(),
            serial: "kvmx-target".into(),
            read_only: false,
        },
        ExtraDisk {
            path: "/kvmx/cache/rootfs.tar".into(),
            serial: "kvmx-rootfs".into(),
            read_only: true,
        },
    ];
    insta::assert_snapshot!(render(&toml(""), &launch));
}

#[test]
fn a_warm_disposable_restored() {
    let config = toml("[network]\nrestrict = true\n");
    let mut launch = launch(Accel::Tcg, Some(2222));
    launch.memory_file = Some(("/kvmx/data/tmpl/warm/k/memory.ram".into(), false));
    launch.incoming = true;
    launch.clock_pipe = Some("/kvmx/run/example/clock".into());
    insta::assert_snapshot!(render(&config, &launch));
}

#[test]
fn spice_with_agent() {
    let config = toml("[display]\nkind = \"spice\"\nvdagent = true\n");
    insta::assert_snapshot!(render(&config, &launch(Accel::Tcg, Some(2222))));
}

#[test]
fn vnc_gtk_and_sdl() {
    let mut out = String::new();
    for kind in ["vnc", "gtk", "sdl"] {
        let config = toml(&format!("[display]\nkind = \"{kind}\"\nvga = \"virtio\"\n"));
        out.push_str(&render(&config, &launch(Accel::Tcg, Some(2222))));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn direct_kernel_boot() {
    let mut launch = launch(Accel::Tcg, Some(2222));
    launch.kernel_boot = Some(KernelBoot {
        kernel: "/kvmx/data/example/box.img.vmlinuz".into(),
        initrd: "/kvmx/data/example/box.img.initrd".into(),
        append: "root=UUID=0000 ro console=ttyS0".into(),
    });
    insta::assert_snapshot!(render(
        &toml("[create]\nbootloader = \"direct\"\n"),
        &launch
    ));
}

/// The Debian installer's run: its kernel and initrd on the blank disk,
/// QEMU ends at the guest's reboot or power-off.
#[test]
fn netboot_installer() {
    let mut launch = launch(Accel::Tcg, None);
    launch.kernel_boot = Some(KernelBoot {
        kernel: "/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64/linux"
            .into(),
        initrd: "/kvmx/data/example/.kvmx-create-x/initrd".into(),
        append: "auto=true priority=critical console=ttyS0,115200n8 DEBIAN_FRONTEND=text".into(),
    });
    launch.no_reboot = true;
    let mut config = toml("[create]\nmethod = \"install\"\n");
    config.image.path = Some("/kvmx/data/example/.kvmx-create-x/disk.qcow2".into());
    insta::assert_snapshot!(render(&config, &launch));
}

/// An installer ISO booted once from the CD-ROM, with the display.
#[test]
fn iso_installer() {
    let mut launch = launch(Accel::Kvm, None);
    launch.install_cdrom = Some("/projects/example/debian-12.8.0-amd64-netinst.iso".into());
    launch.no_reboot = true;
    let config = toml(
        "[create]\nmethod = \"install\"\n[install]\niso = \"debian-12.8.0-amd64-netinst.iso\"\n\
         [display]\nkind = \"vnc\"\n",
    );
    insta::assert_snapshot!(render(&config, &launch));
}

#[test]
fn every_legacy_fixture_after_import() {
    let mut out = String::new();
    for (file, config) in
        kvmx_testkit::fixtures::legacy_configs(Utf8Path::new(PROJECT), Utf8Path::new("/kvmx"))
    {
        out.push_str(&format!("## {file}\n"));
        out.push_str(&render(&config, &launch(Accel::Tcg, Some(2222))));
        out.push('\n');
    }
    insta::assert_snapshot!(out);
}
