"""Writing files safely: atomic writes, temporaries that a killed run leaves behind, and
the user's permissions. Only the standard library, so every module of net/ can use it.

Temporaries are named .tmp-<pid>-...: a later write in the same folder removes those whose
process is gone, never another live run's.
"""
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable

TEMP_PREFIX = '.tmp-'


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call write(tmp_path), then rename onto path: readers never see a half-written file.
    The file gets the user's usual permissions (umask), not a temporary file's 0600."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=temp_folder(directory), suffix=os.path.basename(path),
                               prefix=f'{TEMP_PREFIX}{os.getpid()}-')
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def temp_dir(parent: str, label: str) -> str:
    """A new temporary folder in parent (the user's folder permissions, not 0700)."""
    path = tempfile.mkdtemp(dir=temp_folder(parent), prefix=f'{TEMP_PREFIX}{os.getpid()}-{label}-')
    os.chmod(path, 0o777 & ~current_umask())
    return path


def temp_name(parent: str, label: str) -> str:
    """A free temporary path in parent, for a rename (nothing is created)."""
    return os.path.join(parent, f'{TEMP_PREFIX}{os.getpid()}-{label}')


def temp_folder(directory: str) -> str:
    """directory, made if missing, with the temporaries of killed runs removed from it."""
    os.makedirs(directory, exist_ok=True)
    if os.name != 'posix':  # no cheap way to ask whether a process lives
        return directory
    for name in os.listdir(directory):
        pid = name[len(TEMP_PREFIX):].split('-', 1)[0]
        if name.startswith(TEMP_PREFIX) and pid.isdigit() and not _alive(int(pid)):
            stale = os.path.join(directory, name)
            with contextlib.suppress(OSError):  # gone already, or not ours to remove
                shutil.rmtree(stale) if os.path.isdir(stale) else os.remove(stale)
    return directory


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's live process
        return True
    return True


def current_umask() -> int:
    """The process's umask (read by setting it, then putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
