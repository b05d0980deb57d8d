"""A Windows Job Object through ctypes (no pywin32): every process of a run in one job that the
kernel kills when the last handle closes (also when its holder dies), terminated at once on a stop.

Standard library only and no imports from the pack, relative ones included: the detached job
wrapper (``jobwrapper.py``) runs with musubi-tuner's own interpreter and loads this file by path.
Importable everywhere (the structure sizes are tested off Windows); using it needs Windows.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["JobObject", "STOP_EXIT_CODE", "JOB_LIMITS"]

IS_WINDOWS = sys.platform == "win32"

# Exit code given to every process of a Windows job we terminate on purpose, so
# a cancel is not mistaken for a crash (Popen.terminate would give 1).
STOP_EXIT_CODE = 0xC000013A  # STATUS_CONTROL_C_EXIT: "stopped by the user"

# -- Windows Job Object (ctypes) -------------------------------------------------
#
# DWORD is spelled c_uint32 on purpose: ctypes.wintypes.DWORD is c_ulong, which is
# 8 bytes on 64-bit Linux, so a struct built from wintypes would measure 152
# bytes there instead of Windows' 144 and the size test could not run off Windows.

class IO_COUNTERS(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
        "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]


class JOBOBJECT_BASIC_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", ctypes.c_uint32),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", ctypes.c_uint32),
        ("Affinity", ctypes.c_size_t),  # ULONG_PTR
        ("PriorityClass", ctypes.c_uint32),
        ("SchedulingClass", ctypes.c_uint32),
    ]


class JOBOBJECT_EXTENDED_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", JOBOBJECT_BASIC_LIMIT_INFORMATION),
        ("IoInfo", IO_COUNTERS),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


class JOBOBJECT_BASIC_ACCOUNTING_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("TotalUserTime", ctypes.c_int64),
        ("TotalKernelTime", ctypes.c_int64),
        ("ThisPeriodTotalUserTime", ctypes.c_int64),
        ("ThisPeriodTotalKernelTime", ctypes.c_int64),
        ("TotalPageFaultCount", ctypes.c_uint32),
        ("TotalProcesses", ctypes.c_uint32),
        ("ActiveProcesses", ctypes.c_uint32),
        ("TotalTerminatedProcesses", ctypes.c_uint32),
    ]


JobObjectBasicAccountingInformation = 1
JobObjectBasicProcessIdList = 3
JobObjectExtendedLimitInformation = 9
JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION = 0x400
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
# BREAKAWAY_OK (0x800) and SILENT_BREAKAWAY_OK (0x1000) stay unset: nothing may leave.
JOB_LIMITS = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION


def _kernel32():  # pragma: no cover - Windows only
    from ctypes import wintypes

    k32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    k32.CreateJobObjectW.argtypes = [ctypes.c_void_p, wintypes.LPCWSTR]
    k32.CreateJobObjectW.restype = wintypes.HANDLE
    k32.SetInformationJobObject.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
    k32.SetInformationJobObject.restype = wintypes.BOOL
    k32.AssignProcessToJobObject.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
    k32.AssignProcessToJobObject.restype = wintypes.BOOL
    k32.TerminateJobObject.argtypes = [wintypes.HANDLE, ctypes.c_uint32]
    k32.TerminateJobObject.restype = wintypes.BOOL
    k32.QueryInformationJobObject.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p,
                                              ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]
    k32.QueryInformationJobObject.restype = wintypes.BOOL
    k32.CloseHandle.argtypes = [wintypes.HANDLE]
    k32.CloseHandle.restype = wintypes.BOOL
    return k32


def _check(ok: int, what: str) -> None:  # pragma: no cover - Windows only
    if not ok:
        err = ctypes.get_last_error()  # type: ignore[attr-defined]
        raise OSError(err, f"{what} failed: {ctypes.FormatError(err).strip()}")  # type: ignore[attr-defined]


class JobObject:  # pragma: no cover - exercised on Windows only
    """A Windows Job Object holding one run: closing our handle (also when
    ComfyUI dies) kills every process in it, and crash dialogs cannot block it."""

    def __init__(self) -> None:
        if not IS_WINDOWS:
            raise OSError("Job Objects exist only on Windows")
        self._k32 = _kernel32()
        handle = self._k32.CreateJobObjectW(None, None)
        _check(handle, "CreateJobObjectW")
        self.handle = handle
        info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION()
        info.BasicLimitInformation.LimitFlags = JOB_LIMITS
        try:
            _check(self._k32.SetInformationJobObject(handle, JobObjectExtendedLimitInformation,
                                                     ctypes.byref(info), ctypes.sizeof(info)),
                   "SetInformationJobObject")
        except OSError:
            self.close()
            raise

    def assign(self, process_handle: int) -> None:
        _check(self._k32.AssignProcessToJobObject(self.handle, process_handle), "AssignProcessToJobObject")

    def terminate(self, exit_code: int = STOP_EXIT_CODE) -> None:
        if self.handle:
            _check(self._k32.TerminateJobObject(self.handle, exit_code), "TerminateJobObject")

    def active_processes(self) -> int:
        info = JOBOBJECT_BASIC_ACCOUNTING_INFORMATION()
        _check(self._k32.QueryInformationJobObject(self.handle, JobObjectBasicAccountingInformation,
                                                   ctypes.byref(info), ctypes.sizeof(info), None),
               "QueryInformationJobObject")
        return int(info.ActiveProcesses)

    def pids(self) -> list[int]:
        if not self.handle:
            return []
        capacity = 1024

        class _PidList(ctypes.Structure):
            _fields_ = [("NumberOfAssignedProcesses", ctypes.c_uint32),
                        ("NumberOfProcessIdsInList", ctypes.c_uint32),
                        ("ProcessIdList", ctypes.c_size_t * capacity)]

        data = _PidList()
        if not self._k32.QueryInformationJobObject(self.handle, JobObjectBasicProcessIdList,
                                                   ctypes.byref(data), ctypes.sizeof(data), None):
            return []
        return [int(data.ProcessIdList[i]) for i in range(data.NumberOfProcessIdsInList)]

    def close(self) -> None:
        if self.handle:
            self._k32.CloseHandle(self.handle)
            self.handle = None


# -- resuming a process started with CREATE_SUSPENDED, without psutil ------------------------------
#
# Popen closes the primary thread's handle, so a suspended child is resumed by walking a
# Toolhelp thread snapshot: OpenThread(THREAD_SUSPEND_RESUME) + ResumeThread for each of its
# threads (what psutil's NtResumeProcess does, in documented calls).

TH32CS_SNAPTHREAD = 0x00000004
THREAD_SUSPEND_RESUME = 0x0002


class THREADENTRY32(ctypes.Structure):
    _fields_ = [
        ("dwSize", ctypes.c_uint32),
        ("cntUsage", ctypes.c_uint32),
        ("th32ThreadID", ctypes.c_uint32),
        ("th32OwnerProcessID", ctypes.c_uint32),
        ("tpBasePri", ctypes.c_int32),
        ("tpDeltaPri", ctypes.c_int32),
        ("dwFlags", ctypes.c_uint32),
    ]


def resume_process(pid: int) -> int:  # pragma: no cover - Windows only
    """Resume every thread of ``pid``; returns how many were resumed (raises OSError on none)."""
    from ctypes import wintypes

    k32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    k32.CreateToolhelp32Snapshot.argtypes = [ctypes.c_uint32, ctypes.c_uint32]
    k32.CreateToolhelp32Snapshot.restype = wintypes.HANDLE
    k32.Thread32First.argtypes = [wintypes.HANDLE, ctypes.POINTER(THREADENTRY32)]
    k32.Thread32First.restype = wintypes.BOOL
    k32.Thread32Next.argtypes = [wintypes.HANDLE, ctypes.POINTER(THREADENTRY32)]
    k32.Thread32Next.restype = wintypes.BOOL
    k32.OpenThread.argtypes = [ctypes.c_uint32, wintypes.BOOL, ctypes.c_uint32]
    k32.OpenThread.restype = wintypes.HANDLE
    k32.ResumeThread.argtypes = [wintypes.HANDLE]
    k32.ResumeThread.restype = ctypes.c_uint32
    k32.CloseHandle.argtypes = [wintypes.HANDLE]
    k32.CloseHandle.restype = wintypes.BOOL
    snapshot = k32.CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0)
    if not snapshot or snapshot == wintypes.HANDLE(-1).value:
        _check(0, "CreateToolhelp32Snapshot")
    resumed = 0
    try:
        entry = THREADENTRY32()
        entry.dwSize = ctypes.sizeof(THREADENTRY32)
        more = k32.Thread32First(snapshot, ctypes.byref(entry))
        while more:
            if entry.th32OwnerProcessID == pid:
                thread = k32.OpenThread(THREAD_SUSPEND_RESUME, False, entry.th32ThreadID)
                if thread:
                    if k32.ResumeThread(thread) != 0xFFFFFFFF:
                        resumed += 1
                    k32.CloseHandle(thread)
            more = k32.Thread32Next(snapshot, ctypes.byref(entry))
    finally:
        k32.CloseHandle(snapshot)
    if not resumed:
        raise OSError(f"no thread of process {pid} could be resumed")
    return resumed
