//! `--disk`: the session's size-limited filesystem, an ext4 image attached to a loop device
//! and mounted in the sandbox's own mount namespace only. The loop device clears itself
//! when the last mount goes, which is when the sandbox's namespace dies.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::check;
use super::ns::mount;

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config` of `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Attaches `image` to a free loop device (self-clearing) and returns the device.
fn attach(image: &File) -> io::Result<File> {
    let control = File::options()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    // Another process may take the device between GET_FREE and CONFIGURE: try again.
    let mut last = io::Error::other("no free loop device");
    for _ in 0..16 {
        // SAFETY: an ioctl without arguments on a descriptor we own.
        let number = unsafe { check(libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE))? };
        let device = match File::options()
            .read(true)
            .write(true)
            .open(format!("/dev/loop{number}"))
        {
            Ok(device) => device,
            Err(e) => {
                last = e;
                continue;
            }
        };
        // SAFETY: LoopConfig is plain data; all zeroes is its "no options" value.
        let mut config: LoopConfig = unsafe { std::mem::zeroed() };
        config.fd = u32::try_from(image.as_raw_fd()).map_err(io::Error::other)?;
        config.info.flags = LO_FLAGS_AUTOCLEAR;
        // SAFETY: LOOP_CONFIGURE reads a loop_config that lives across the call.
        match unsafe { check(libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE, &config)) } {
            Ok(_) => return Ok(device),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Opens the image. Before the mount namespace is made: a file open for writing through
/// the namespace's copy of a mount would keep that mount from becoming read-only.
///
/// It is also locked: the loop device keeps this open file (and so the lock) until the
/// last mount of the image is gone, so the agent of a restarted sandbox waits here until
/// its killed predecessor's namespace has let go, and an image is never mounted twice.
pub fn open_image(image: &Path) -> io::Result<File> {
    let file = File::options()
        .read(true)
        .write(true)
        .open(image)
        .map_err(|e| io::Error::new(e.kind(), format!("--disk {}: {e}", image.display())))?;
    for _ in 0..LOCK_TRIES {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(io::Error::other(format!(
        "--disk {} is still mounted by another sandbox",
        image.display()
    )))
}

/// 50 ms apart: ten seconds for a killed sandbox's mounts to go.
const LOCK_TRIES: u32 = 200;

/// Mounts the ext4 image `file` on `target` (nosuid, nodev).
pub fn mount_image(file: &File, target: &Path) -> io::Result<()> {
    let device = attach(file)
        .map_err(|e| io::Error::new(e.kind(), format!("attaching a loop device: {e}")))?;
    let source = format!("/dev/fd/{}", device.as_raw_fd());
    // The mount holds the loop device; our descriptors may go (autoclear waits for both).
    let path = std::fs::read_link(&source)?;
    mount(
        path.to_str(),
        target,
        Some("ext4"),
        libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )
}
