//! The agent's only `unsafe` code: thin, safe wrappers over the Win32 calls no crate wraps
//! (the registry is `winreg`, services are `windows-service`, WMI is `wmi`). Each function
//! owns its buffers and frees what Windows allocated before returning; callers get owned
//! Rust values or an `io::Error` carrying the Win32 error code.
//!
//! What is here: logged-on sessions (WTS), the domain/workgroup join (NetGetJoinInformation),
//! the raw SMBIOS table (GetSystemFirmwareTable), physical disks (storage IOCTLs on
//! `\\.\PhysicalDriveN`, no admin rights needed), batteries (SetupAPI + battery IOCTLs), the
//! state directory's ACL (SDDL), and whether the process is elevated.
//!
//! Why `unsafe` is allowed here and nowhere else: these are FFI calls with raw pointers; the
//! crate lints `unsafe_code` as deny and this module alone allows it.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;
use std::ptr::{null, null_mut};

use crate::inventory::windows_data::{PhysicalDisk, parse_storage_descriptor};
use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    DIGCF_DEVICEINTERFACE, DIGCF_PRESENT, GUID_DEVCLASS_BATTERY, SP_DEVICE_INTERFACE_DATA,
    SP_DEVICE_INTERFACE_DETAIL_DATA_W, SetupDiDestroyDeviceInfoList, SetupDiEnumDeviceInterfaces,
    SetupDiGetClassDevsW, SetupDiGetDeviceInterfaceDetailW,
};
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_FILE_NOT_FOUND, ERROR_INSUFFICIENT_BUFFER, ERROR_NO_MORE_ITEMS,
    ERROR_PATH_NOT_FOUND, GENERIC_READ, GENERIC_WRITE, HANDLE, INVALID_HANDLE_VALUE, LocalFree,
};
use windows_sys::Win32::NetworkManagement::NetManagement::{
    NETSETUP_JOIN_STATUS, NetApiBufferFree, NetGetJoinInformation, NetSetupDomainName,
    NetSetupWorkgroupName,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetNamedSecurityInfoW, SDDL_REVISION_1,
    SE_FILE_OBJECT, SetNamedSecurityInfoW,
};
use windows_sys::Win32::Security::{
    ACL, DACL_SECURITY_INFORMATION, GetSecurityDescriptorDacl, PROTECTED_DACL_SECURITY_INFORMATION,
    PSECURITY_DESCRIPTOR,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_SHARE_READ, FILE_SHARE_WRITE, GetDiskFreeSpaceExW, GetDriveTypeW,
    GetLogicalDriveStringsW, GetVolumeInformationW, GetVolumeNameForVolumeMountPointW,
    OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::DeviceIoControl;
use windows_sys::Win32::System::Ioctl::{
    IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, IOCTL_STORAGE_QUERY_PROPERTY, PropertyStandardQuery,
    STORAGE_PROPERTY_QUERY, StorageDeviceProperty, StorageDeviceSeekPenaltyProperty,
};
use windows_sys::Win32::System::Power::{
    BATTERY_INFORMATION, BATTERY_QUERY_INFORMATION, BatteryDeviceName, BatteryInformation,
    GetSystemPowerStatus, IOCTL_BATTERY_QUERY_INFORMATION, IOCTL_BATTERY_QUERY_TAG,
    SYSTEM_POWER_STATUS,
};
use windows_sys::Win32::System::RemoteDesktop::{
    WTS_CURRENT_SERVER_HANDLE, WTS_SESSION_INFOW, WTSActive, WTSDisconnected, WTSDomainName,
    WTSEnumerateSessionsW, WTSFreeMemory, WTSQuerySessionInformationW, WTSUserName,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemFirmwareTable, RSMB};
use windows_sys::Win32::UI::Shell::IsUserAnAdmin;

/// NUL-terminated UTF-16 for a Win32 `PCWSTR`.
fn wide(s: impl AsRef<OsStr>) -> Vec<u16> {
    s.as_ref().encode_wide().chain(Some(0)).collect()
}

/// Reads a NUL-terminated UTF-16 string. Safety: `p` is null or points at one.
unsafe fn from_wide_ptr(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    let mut len = 0;
    // SAFETY: the caller promises a NUL-terminated string.
    while unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` code units were just read.
    String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(p, len) })
}

/// UTF-16 from a byte buffer, up to the first NUL.
fn from_wide_bytes(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// UTF-16 from a fixed buffer, up to the first NUL.
fn from_wide_units(units: &[u16]) -> String {
    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
    String::from_utf16_lossy(&units[..end])
}

/// A kernel handle closed on drop.
struct Handle(HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateFileW and is closed once.
        unsafe { CloseHandle(self.0) };
    }
}

fn open_device(path: &str, access: u32) -> io::Result<Handle> {
    let name = wide(path);
    // SAFETY: `name` is NUL-terminated; no security attributes or template.
    let h = unsafe {
        CreateFileW(
            name.as_ptr(),
            access,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            null(),
            OPEN_EXISTING,
            0,
            null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        Err(io::Error::last_os_error())
    } else {
        Ok(Handle(h))
    }
}

/// DeviceIoControl with byte buffers; returns the bytes written to `out`.
fn ioctl(h: &Handle, code: u32, input: &[u8], out: &mut [u8]) -> io::Result<usize> {
    let mut returned = 0u32;
    // SAFETY: both buffers are valid for their lengths; synchronous call (no OVERLAPPED).
    let ok = unsafe {
        DeviceIoControl(
            h.0,
            code,
            input.as_ptr().cast(),
            input.len() as u32,
            out.as_mut_ptr().cast(),
            out.len() as u32,
            &mut returned,
            null_mut(),
        )
    };
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(returned as usize)
    }
}

/// The bytes of a plain-old-data `repr(C)` struct, for IOCTL inputs.
fn pod_bytes<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: T is Copy repr(C) data from windows-sys; reading its bytes is defined.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

// ---- sessions -------------------------------------------------------------------------------

/// `DOMAIN\user` (or `user`) of every active or disconnected session, unique and sorted.
pub fn session_users() -> io::Result<Vec<String>> {
    let mut info: *mut WTS_SESSION_INFOW = null_mut();
    let mut count = 0u32;
    // SAFETY: out-pointers are valid; the list is freed below with WTSFreeMemory.
    if unsafe { WTSEnumerateSessionsW(WTS_CURRENT_SERVER_HANDLE, 0, 1, &mut info, &mut count) } == 0
    {
        return Err(io::Error::last_os_error());
    }
    let mut users = std::collections::BTreeSet::new();
    if !info.is_null() {
        // SAFETY: WTS returned `count` entries at `info`.
        let sessions = unsafe { std::slice::from_raw_parts(info, count as usize) };
        for s in sessions {
            if s.State != WTSActive && s.State != WTSDisconnected {
                continue;
            }
            let user = session_string(s.SessionId, WTSUserName);
            if user.is_empty() {
                continue;
            }
            let domain = session_string(s.SessionId, WTSDomainName);
            users.insert(if domain.is_empty() {
                user
            } else {
                format!("{domain}\\{user}")
            });
        }
        // SAFETY: allocated by WTSEnumerateSessionsW.
        unsafe { WTSFreeMemory(info.cast()) };
    }
    Ok(users.into_iter().collect())
}

fn session_string(session: u32, class: i32) -> String {
    let mut buf: *mut u16 = null_mut();
    let mut bytes = 0u32;
    // SAFETY: out-pointers are valid; the buffer is freed with WTSFreeMemory.
    let ok = unsafe {
        WTSQuerySessionInformationW(
            WTS_CURRENT_SERVER_HANDLE,
            session,
            class,
            &mut buf,
            &mut bytes,
        )
    };
    if ok == 0 || buf.is_null() {
        return String::new();
    }
    // SAFETY: WTS returns a NUL-terminated string.
    let s = unsafe { from_wide_ptr(buf) };
    // SAFETY: allocated by WTSQuerySessionInformationW.
    unsafe { WTSFreeMemory(buf.cast()) };
    s.trim().to_owned()
}

// ---- domain ---------------------------------------------------------------------------------

/// How the machine is joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    Domain,
    Workgroup,
    Unknown,
}

/// The NetBIOS domain or workgroup name and which of the two it is.
pub fn join_information() -> io::Result<(String, Join)> {
    let mut name: *mut u16 = null_mut();
    let mut status: NETSETUP_JOIN_STATUS = 0;
    // SAFETY: local computer (null server); the name buffer is freed with NetApiBufferFree.
    let rc = unsafe { NetGetJoinInformation(null(), &mut name, &mut status) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    // SAFETY: NetGetJoinInformation returns a NUL-terminated string.
    let text = unsafe { from_wide_ptr(name) };
    if !name.is_null() {
        // SAFETY: allocated by NetGetJoinInformation.
        unsafe { NetApiBufferFree(name.cast()) };
    }
    let join = if status == NetSetupDomainName {
        Join::Domain
    } else if status == NetSetupWorkgroupName {
        Join::Workgroup
    } else {
        Join::Unknown
    };
    Ok((text, join))
}

// ---- SMBIOS ---------------------------------------------------------------------------------

/// The raw SMBIOS structure table (without the 8-byte RawSMBIOSData header).
pub fn smbios_table() -> io::Result<Vec<u8>> {
    // SAFETY: a null buffer of size 0 asks for the size.
    let size = unsafe { GetSystemFirmwareTable(RSMB, 0, null_mut(), 0) };
    if size == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; size as usize];
    // SAFETY: `buf` holds `size` bytes.
    let got = unsafe { GetSystemFirmwareTable(RSMB, 0, buf.as_mut_ptr(), size) };
    if got == 0 || got > size {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(got as usize);
    if buf.len() < 8 {
        return Err(io::Error::other("SMBIOS table shorter than its header"));
    }
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    let end = (8 + len).min(buf.len());
    Ok(buf[8..end].to_vec())
}

// ---- physical disks -------------------------------------------------------------------------

/// Physical disks 0..64 that exist. Opening with no access rights lets an ordinary user query
/// them. Errors only when not one disk could be opened (every Windows machine has disk 0).
pub fn physical_disks() -> io::Result<Vec<PhysicalDisk>> {
    let mut out = Vec::new();
    let mut first_error = None;
    for index in 0..64 {
        let path = format!(r"\\.\PhysicalDrive{index}");
        let h = match open_device(&path, 0) {
            Ok(h) => h,
            Err(e) => {
                let code = e.raw_os_error().unwrap_or(0) as u32;
                if code != ERROR_FILE_NOT_FOUND && code != ERROR_PATH_NOT_FOUND {
                    first_error.get_or_insert(e);
                }
                continue;
            }
        };
        let mut disk = PhysicalDisk {
            index,
            ..PhysicalDisk::default()
        };
        let query = STORAGE_PROPERTY_QUERY {
            PropertyId: StorageDeviceProperty,
            QueryType: PropertyStandardQuery,
            AdditionalParameters: [0],
        };
        let mut buf = vec![0u8; 4096];
        if let Ok(n) = ioctl(
            &h,
            IOCTL_STORAGE_QUERY_PROPERTY,
            &pod_bytes(&query),
            &mut buf,
        ) {
            parse_storage_descriptor(&buf[..n], &mut disk);
        }
        let query = STORAGE_PROPERTY_QUERY {
            PropertyId: StorageDeviceSeekPenaltyProperty,
            QueryType: PropertyStandardQuery,
            AdditionalParameters: [0],
        };
        let mut pen = [0u8; 12];
        if let Ok(n) = ioctl(
            &h,
            IOCTL_STORAGE_QUERY_PROPERTY,
            &pod_bytes(&query),
            &mut pen,
        ) && n >= 9
        {
            disk.seek_penalty = Some(pen[8] != 0);
        }
        // DISK_GEOMETRY_EX: a 24-byte DISK_GEOMETRY, then DiskSize (i64).
        let mut geo = [0u8; 256];
        if let Ok(n) = ioctl(&h, IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, &[], &mut geo)
            && n >= 32
        {
            let size = i64::from_le_bytes(geo[24..32].try_into().unwrap_or_default());
            disk.size_bytes = u64::try_from(size).unwrap_or(0);
        }
        out.push(disk);
    }
    match (out.is_empty(), first_error) {
        (true, Some(e)) => Err(e),
        (true, None) => Err(io::Error::other("no physical disk could be opened")),
        _ => Ok(out),
    }
}

// ---- volumes --------------------------------------------------------------------------------

/// A mounted drive letter with a file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalVolume {
    /// `C:\`
    pub root: String,
    /// `\\?\Volume{…}\` where Windows knows it.
    pub volume: String,
    pub file_system: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub removable: bool,
}

const DRIVE_REMOVABLE: u32 = 2;
const DRIVE_FIXED: u32 = 3;

/// Fixed and removable drive letters that have a file system (network drives, optical
/// drives and empty card readers are skipped).
pub fn logical_volumes() -> io::Result<Vec<LogicalVolume>> {
    let mut buf = vec![0u16; 512];
    // SAFETY: `buf` holds 512 UTF-16 units.
    let n = unsafe { GetLogicalDriveStringsW(buf.len() as u32, buf.as_mut_ptr()) } as usize;
    if n == 0 || n > buf.len() {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    for root in buf[..n].split(|&c| c == 0).filter(|r| !r.is_empty()) {
        let root_str = String::from_utf16_lossy(root);
        let w: Vec<u16> = root.iter().copied().chain(Some(0)).collect();
        // SAFETY: `w` is NUL-terminated.
        let kind = unsafe { GetDriveTypeW(w.as_ptr()) };
        if kind != DRIVE_FIXED && kind != DRIVE_REMOVABLE {
            continue;
        }
        let mut fs = [0u16; 64];
        // SAFETY: buffers valid for their lengths; unused outputs null.
        let ok = unsafe {
            GetVolumeInformationW(
                w.as_ptr(),
                null_mut(),
                0,
                null_mut(),
                null_mut(),
                null_mut(),
                fs.as_mut_ptr(),
                fs.len() as u32,
            )
        };
        if ok == 0 {
            continue; // no media
        }
        let (mut avail, mut total, mut free) = (0u64, 0u64, 0u64);
        // SAFETY: valid out-pointers.
        if unsafe { GetDiskFreeSpaceExW(w.as_ptr(), &mut avail, &mut total, &mut free) } == 0 {
            continue;
        }
        let mut name = [0u16; 64];
        // SAFETY: `name` holds 64 units (a volume GUID path is 49).
        let volume = if unsafe {
            GetVolumeNameForVolumeMountPointW(w.as_ptr(), name.as_mut_ptr(), name.len() as u32)
        } != 0
        {
            from_wide_units(&name)
        } else {
            String::new()
        };
        out.push(LogicalVolume {
            root: root_str,
            volume,
            file_system: from_wide_units(&fs),
            total_bytes: total,
            // No reserved blocks on Windows; quotas aside, the caller's free space is free.
            free_bytes: free,
            removable: kind == DRIVE_REMOVABLE,
        });
    }
    Ok(out)
}

// ---- batteries ------------------------------------------------------------------------------

/// What the battery driver reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatteryInfo {
    pub name: String,
    pub chemistry: String,
    pub designed_capacity: u32,
    pub full_charged_capacity: u32,
    pub cycle_count: u32,
    /// Capacities are relative units, not mWh.
    pub relative: bool,
}

/// Batteries of this machine; empty when Windows says it has no system battery.
pub fn batteries() -> io::Result<Vec<BatteryInfo>> {
    let mut status = SYSTEM_POWER_STATUS::default();
    // SAFETY: valid out-pointer.
    if unsafe { GetSystemPowerStatus(&mut status) } != 0 && status.BatteryFlag == 128 {
        return Ok(Vec::new()); // "No system battery"
    }
    // SAFETY: a device information set for present battery interfaces, destroyed below.
    let set = unsafe {
        SetupDiGetClassDevsW(
            &GUID_DEVCLASS_BATTERY,
            null(),
            null_mut(),
            DIGCF_PRESENT | DIGCF_DEVICEINTERFACE,
        )
    };
    if set == -1 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    for member in 0..16 {
        let mut data = SP_DEVICE_INTERFACE_DATA {
            cbSize: std::mem::size_of::<SP_DEVICE_INTERFACE_DATA>() as u32,
            ..SP_DEVICE_INTERFACE_DATA::default()
        };
        // SAFETY: `set` is valid; `data` has its size set.
        if unsafe {
            SetupDiEnumDeviceInterfaces(set, null(), &GUID_DEVCLASS_BATTERY, member, &mut data)
        } == 0
        {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(ERROR_NO_MORE_ITEMS as i32) {
                tracing::debug!(error = %e, "Battery enumeration stopped");
            }
            break;
        }
        let Some(path) = interface_path(set, &data) else {
            continue;
        };
        match battery_info(&path) {
            Ok(b) => out.push(b),
            Err(error) => tracing::debug!(%error, %path, "Cannot query a battery"),
        }
    }
    // SAFETY: created above.
    unsafe { SetupDiDestroyDeviceInfoList(set) };
    Ok(out)
}

fn interface_path(set: isize, data: &SP_DEVICE_INTERFACE_DATA) -> Option<String> {
    let mut needed = 0u32;
    // SAFETY: size query with a null buffer.
    unsafe { SetupDiGetDeviceInterfaceDetailW(set, data, null_mut(), 0, &mut needed, null_mut()) };
    let e = io::Error::last_os_error();
    if needed == 0 || e.raw_os_error() != Some(ERROR_INSUFFICIENT_BUFFER as i32) {
        return None;
    }
    // u64 storage keeps the struct aligned.
    let mut buf = vec![0u64; (needed as usize).div_ceil(8) + 1];
    let detail = buf.as_mut_ptr().cast::<SP_DEVICE_INTERFACE_DETAIL_DATA_W>();
    // SAFETY: the buffer is large enough and aligned; cbSize is the fixed part's size.
    unsafe {
        (*detail).cbSize = std::mem::size_of::<SP_DEVICE_INTERFACE_DETAIL_DATA_W>() as u32;
        if SetupDiGetDeviceInterfaceDetailW(set, data, detail, needed, null_mut(), null_mut()) == 0
        {
            return None;
        }
        Some(from_wide_ptr((*detail).DevicePath.as_ptr()))
    }
}

fn battery_info(path: &str) -> io::Result<BatteryInfo> {
    let h = open_device(path, GENERIC_READ | GENERIC_WRITE)?;
    let mut tag = [0u8; 4];
    ioctl(&h, IOCTL_BATTERY_QUERY_TAG, &0u32.to_le_bytes(), &mut tag)?;
    let tag = u32::from_le_bytes(tag);
    if tag == 0 {
        return Err(io::Error::other("no battery in the slot"));
    }
    let q = BATTERY_QUERY_INFORMATION {
        BatteryTag: tag,
        InformationLevel: BatteryInformation,
        AtRate: 0,
    };
    let mut raw = vec![0u8; std::mem::size_of::<BATTERY_INFORMATION>()];
    ioctl(
        &h,
        IOCTL_BATTERY_QUERY_INFORMATION,
        &pod_bytes(&q),
        &mut raw,
    )?;
    let u32_at = |o: usize| u32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
    let capabilities = u32_at(0);
    let chemistry = String::from_utf8_lossy(&raw[8..12])
        .trim_matches(char::from(0))
        .trim()
        .to_owned();
    let mut info = BatteryInfo {
        name: String::new(),
        chemistry,
        designed_capacity: u32_at(12),
        full_charged_capacity: u32_at(16),
        cycle_count: u32_at(32),
        relative: capabilities & 0x4000_0000 != 0,
    };
    let q = BATTERY_QUERY_INFORMATION {
        BatteryTag: tag,
        InformationLevel: BatteryDeviceName,
        AtRate: 0,
    };
    let mut name = vec![0u8; 512];
    if let Ok(n) = ioctl(
        &h,
        IOCTL_BATTERY_QUERY_INFORMATION,
        &pod_bytes(&q),
        &mut name,
    ) {
        info.name = from_wide_bytes(&name[..n]).trim().to_owned();
    }
    Ok(info)
}

// ---- ACL ------------------------------------------------------------------------------------

/// SYSTEM and Administrators: full control, inherited by files and folders; nobody else.
pub const PRIVATE_DACL: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

/// Replaces `path`'s DACL with [`PRIVATE_DACL`], protected from inheritance.
pub fn set_private_dacl(path: &Path) -> io::Result<()> {
    let sddl = wide(PRIVATE_DACL);
    let mut sd: PSECURITY_DESCRIPTOR = null_mut();
    // SAFETY: `sddl` is NUL-terminated; `sd` is freed with LocalFree.
    if unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            null_mut(),
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    let result = (|| {
        let mut present = 0;
        let mut defaulted = 0;
        let mut dacl: *mut ACL = null_mut();
        // SAFETY: `sd` is a valid descriptor; the DACL points into it.
        if unsafe { GetSecurityDescriptorDacl(sd, &mut present, &mut dacl, &mut defaulted) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let name = wide(path.as_os_str());
        // SAFETY: `name` is NUL-terminated; `dacl` lives as long as `sd`.
        let rc = unsafe {
            SetNamedSecurityInfoW(
                name.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                null_mut(),
                null_mut(),
                dacl,
                null(),
            )
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc as i32));
        }
        Ok(())
    })();
    // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
    unsafe { LocalFree(sd) };
    result
}

/// `path`'s DACL as SDDL (e.g. `D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)`).
pub fn dacl_sddl(path: &Path) -> io::Result<String> {
    let name = wide(path.as_os_str());
    let mut sd: PSECURITY_DESCRIPTOR = null_mut();
    // SAFETY: out-pointers valid; `sd` is freed with LocalFree.
    let rc = unsafe {
        GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
            &mut sd,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    let mut text: *mut u16 = null_mut();
    // SAFETY: `sd` is valid; `text` is freed with LocalFree.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd,
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            null_mut(),
        )
    };
    let result = if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: a NUL-terminated string from the call above.
        let s = unsafe { from_wide_ptr(text) };
        // SAFETY: allocated by ConvertSecurityDescriptorToStringSecurityDescriptorW.
        unsafe { LocalFree(text.cast()) };
        Ok(s)
    };
    // SAFETY: allocated by GetNamedSecurityInfoW.
    unsafe { LocalFree(sd) };
    result
}

/// Whether the process runs with administrator rights (elevated).
pub fn is_elevated() -> bool {
    // SAFETY: no arguments.
    unsafe { IsUserAnAdmin() != 0 }
}

// ---- CPU ------------------------------------------------------------------------------------

/// Idle, kernel (which includes idle) and user time of all CPUs, in 100 ns ticks.
pub fn system_times() -> io::Result<(u64, u64, u64)> {
    use windows_sys::Win32::Foundation::FILETIME;
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut idle, mut kernel, mut user) = (zero, zero, zero);
    // SAFETY: valid out-pointers.
    if unsafe {
        windows_sys::Win32::System::Threading::GetSystemTimes(&mut idle, &mut kernel, &mut user)
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    let t = |f: FILETIME| (u64::from(f.dwHighDateTime) << 32) | u64::from(f.dwLowDateTime);
    Ok((t(idle), t(kernel), t(user)))
}

// ---- service entry point --------------------------------------------------------------------

// `define_windows_service!` expands to the `extern "system"` entry point the SCM calls, with an
// unsafe block inside: it belongs here.
windows_service::define_windows_service!(ffi_service_main, service_main_trampoline);

fn service_main_trampoline(args: Vec<std::ffi::OsString>) {
    crate::service::service_main(args);
}

/// Connects this process to the SCM; returns when the service has stopped, or fails at once
/// (error 1063) when the process was not started by the SCM.
pub fn run_service_dispatcher(name: &str) -> windows_service::Result<()> {
    windows_service::service_dispatcher::start(name, ffi_service_main)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SDDL → security descriptor → SDDL, in memory.
    fn sddl_round_trip(sddl: &str) -> String {
        let text = wide(sddl);
        let mut sd: PSECURITY_DESCRIPTOR = null_mut();
        // SAFETY: as in set_private_dacl; both allocations are freed below.
        unsafe {
            assert_ne!(
                ConvertStringSecurityDescriptorToSecurityDescriptorW(
                    text.as_ptr(),
                    SDDL_REVISION_1,
                    &mut sd,
                    null_mut()
                ),
                0
            );
            let mut out: *mut u16 = null_mut();
            assert_ne!(
                ConvertSecurityDescriptorToStringSecurityDescriptorW(
                    sd,
                    SDDL_REVISION_1,
                    DACL_SECURITY_INFORMATION,
                    &mut out,
                    null_mut()
                ),
                0
            );
            let s = from_wide_ptr(out);
            LocalFree(out.cast());
            LocalFree(sd);
            s
        }
    }

    #[test]
    fn private_dacl_is_system_and_administrators_only() {
        let sddl = sddl_round_trip(PRIVATE_DACL);
        assert!(
            sddl.starts_with("D:P"),
            "protected from inheritance: {sddl}"
        );
        assert!(
            sddl.contains("(A;OICI;FA;;;SY)") && sddl.contains("(A;OICI;FA;;;BA)"),
            "{sddl}"
        );
        assert_eq!(
            sddl.matches("(A;").count(),
            2,
            "no one else is allowed: {sddl}"
        );

        // Applying it succeeds, and the (elevated) agent can still use the directory. Whether
        // it reads back depends on the OS: Debian's Wine 8 keeps no file ACLs (its wineserver
        // is built without security-descriptor xattrs), Windows does.
        let dir = std::env::temp_dir().join(format!("caretaker-acl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        set_private_dacl(&dir).unwrap();
        std::fs::write(dir.join("identity.json"), "{}").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("identity.json")).unwrap(),
            "{}"
        );
        let on_disk = dacl_sddl(&dir).unwrap();
        assert!(on_disk.starts_with("D:"), "{on_disk}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn machine_facts_are_readable() {
        let vols = logical_volumes().unwrap();
        assert!(
            vols.iter().any(|v| v.root == "C:\\" && v.total_bytes > 0),
            "{vols:?}"
        );
        let (name, _) = join_information().unwrap();
        assert!(!name.is_empty());
        let t1 = system_times().unwrap();
        let t2 = system_times().unwrap();
        assert!(t2.1 >= t1.1 && t2.2 >= t1.2);
        assert!(session_users().is_ok());
        assert!(batteries().is_ok());
    }
}
