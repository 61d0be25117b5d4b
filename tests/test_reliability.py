"""What survives what: faults injected at exact points (tests/faults.py), with real
signals, real files and real processes, then the checks a user would make."""
import errno
import os
import pickle
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from evo_nos.cli import run as cli
from evo_nos.cli.errors import EXIT_INTERRUPTED
from evo_nos.core.files import FileLock
from evo_nos.search import (CHECKPOINT_FILE, PREVIOUS_FILE, CheckpointError, FunnelSettings,
                            SaveError, Search, SearchInUse, SearchState, load_checkpoint,
                            new_search_dir)
from evo_nos.search import driver
from evo_nos.search.checkpoint import LOCK_FILE, REQUIRED_KEYS, frame
from evo_nos.search.state import ADDED_KEYS
from evo_nos.fitness.data import DataError
from evo_nos.fitness.standin import StandInBackend
from evo_nos.operators.space import SearchSpace
from evo_nos.strategies import make_strategy
from evo_nos.tracking import Tracker

from mlflow_store import fresh_store

FAULTS = str(Path(__file__).with_name("faults.py"))
STANDIN = "standin:mul(exp(mul(sign_g, sign_m)), g)"
BATCH = 4
ARGS = ["--fitness", STANDIN, "--budget", "24", "--seed", "3", "--batch-size", str(BATCH),
        "--population", "8", "--tournament", "3", "--quiet", "--out", "runs"]


@pytest.fixture
def store(tmp_path):
    return fresh_store(tmp_path / "store")


def run(tmp_path, store, *args, fault=None, n=1, env=None):
    """``python -m evo_nos.run ARGS`` in ``tmp_path`` (with ``fault`` injected at its
    ``n``-th occasion); SIGINT's default action restored, whatever this process has."""
    command = ([sys.executable, FAULTS, fault, str(n), "--"] if fault
               else [sys.executable, "-m", "evo_nos.run"]) + list(args)
    environment = dict(os.environ, MLFLOW_TRACKING_URI=store, **(env or {}))
    if store is None:
        environment.pop("MLFLOW_TRACKING_URI")
    return subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True,
                          text=True, timeout=300,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def resume(tmp_path, store) -> int:
    """``--resume last`` in this process (what the fault left is in a real folder)."""
    return cli.main(["--resume", "last", "--quiet", "--out", str(tmp_path / "runs"),
                     "--tracking-uri", store])


def last_line(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def parent_runs(uri, *, deleted=False):
    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string="tags.`mlflow.parentRunId` IS NULL",
                              run_view_type=3 if deleted else 1,
                              order_by=["attributes.start_time ASC"])


def folder_of(tmp_path) -> Path:
    (folder,) = (tmp_path / "runs").iterdir()
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The search of ARGS run once, undisturbed: what every fault must end in."""
    tmp = tmp_path_factory.mktemp("reference")
    uri = fresh_store(tmp / "store")
    assert cli.main([*ARGS[:-1], str(tmp / "runs"), "--tracking-uri", uri]) == 0
    (folder,) = (tmp / "runs").iterdir()
    state = load_checkpoint(folder)
    (parent,) = parent_runs(uri)
    history = MlflowClient(tracking_uri=uri).get_metric_history(parent.info.run_id,
                                                                "candidate_fitness")
    return state, [(m.step, m.value) for m in history]


def scores(history):
    return [(r["rule"], r["fitness"], r["status"], r["step"]) for r in history]


def hall_of_fame(state):
    return {key: (entry[0]["rule"], entry[0]["fitness"], entry[0]["seeds"])
            for key, entry in state["hall_of_fame"]["top"].items()}


def same_search(state, reference_state):
    assert state["status"] == "finished"
    assert scores(state["history"]) == scores(reference_state["history"])
    assert hall_of_fame(state) == hall_of_fame(reference_state)


def fitness_points(uri, run_id):
    points = MlflowClient(tracking_uri=uri).get_metric_history(run_id, "candidate_fitness")
    return sorted((m.step, m.value) for m in points)


# -- Ctrl+C and kill -9 ---------------------------------------------------------------------
def test_ctrl_c_in_a_batch_saves_the_batches_before_it_and_resume_finishes_the_same_search(
        tmp_path, store, reference):
    proc = run(tmp_path, store, *ARGS, fault="sigint-in-batch", n=6)   # in the 6th batch
    assert proc.returncode == EXIT_INTERRUPTED, proc.stderr
    assert "interrupted; continue with: python -m evo_nos.run --resume" in proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    stopped = load_checkpoint(folder_of(tmp_path))
    assert stopped["status"] == "interrupted"
    assert stopped["counts"]["evaluations"] == 5 * BATCH        # the 6th batch is dropped
    assert scores(stopped["history"]) == scores(reference[0]["history"][:5 * BATCH])
    (parent,) = parent_runs(store)
    assert parent.info.status == "KILLED" and parent.info.run_id == stopped["run_id"]

    assert resume(tmp_path, store) == 0
    finished = load_checkpoint(folder_of(tmp_path))
    same_search(finished, reference[0])
    (parent,) = parent_runs(store)
    assert parent.info.status == "FINISHED" and parent.info.run_id == stopped["run_id"]
    assert fitness_points(store, parent.info.run_id) == sorted(reference[1])


def test_kill_9_in_the_first_batch_resumes_into_the_same_run(tmp_path, store, reference):
    proc = run(tmp_path, store, *ARGS, fault="kill-in-batch", n=1)
    assert proc.returncode == -signal.SIGKILL
    started = load_checkpoint(folder_of(tmp_path))        # written before the first training
    assert started["counts"]["evaluations"] == 0 and started["run_id"] is not None
    assert resume(tmp_path, store) == 0
    same_search(load_checkpoint(folder_of(tmp_path)), reference[0])
    (parent,) = parent_runs(store)                         # one run, not a second one
    assert parent.info.status == "FINISHED" and parent.info.run_id == started["run_id"]
    assert fitness_points(store, parent.info.run_id) == sorted(reference[1])


def test_kill_9_before_the_run_id_was_saved_adopts_the_run_it_had_made(tmp_path, store,
                                                                       reference):
    proc = run(tmp_path, store, *ARGS, fault="kill-after-run-created", n=1)
    assert proc.returncode == -signal.SIGKILL
    started = load_checkpoint(folder_of(tmp_path))
    assert started["run_id"] is None
    (orphan,) = parent_runs(store)
    assert orphan.info.status == "RUNNING"
    assert resume(tmp_path, store) == 0
    finished = load_checkpoint(folder_of(tmp_path))
    same_search(finished, reference[0])
    (parent,) = parent_runs(store)
    assert parent.info.run_id == orphan.info.run_id == finished["run_id"]
    assert parent.info.status == "FINISHED"


def test_ctrl_c_during_start_up_is_one_line_and_leaves_nothing(tmp_path, store):
    proc = run(tmp_path, store, *ARGS, fault="sigint-at-startup", n=1)
    assert proc.returncode == EXIT_INTERRUPTED
    assert last_line(proc) == "interrupted before the search started: nothing was saved"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert parent_runs(store) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_in_a_batch_end_the_search_as_ctrl_c_does(tmp_path, store,
                                                                     reference, signum):
    name = signal.Signals(signum).name
    proc = run(tmp_path, store, *ARGS, fault=f"{name.lower()}-in-batch", n=6)
    assert proc.returncode == 128 + signum, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    resume_lines = [line for line in proc.stdout.splitlines() if "continue with" in line]
    assert resume_lines == [f"interrupted by {name}; continue with: python -m evo_nos.run "
                            f"--resume {load_checkpoint(folder_of(tmp_path))['run_id']} "
                            "--out runs"]
    stopped = load_checkpoint(folder_of(tmp_path))
    assert stopped["status"] == "interrupted"
    assert stopped["counts"]["evaluations"] == 5 * BATCH        # the 6th batch is dropped
    (parent,) = parent_runs(store)
    assert parent.info.status == "KILLED" and parent.info.run_id == stopped["run_id"]
    if signum == signal.SIGTERM:
        assert resume(tmp_path, store) == 0
        same_search(load_checkpoint(folder_of(tmp_path)), reference[0])
        (parent,) = parent_runs(store)
        assert parent.info.status == "FINISHED"
        assert fitness_points(store, parent.info.run_id) == sorted(reference[1])


def test_a_ctrl_c_that_library_code_swallows_still_stops_the_search_at_the_next_check(
        tmp_path, store):
    """As when the KeyboardInterrupt lands in a garbage-collection callback (Python
    discards it): the handler's record stops the search once the batch's trainings end."""
    proc = run(tmp_path, store, *ARGS, fault="swallowed-sigint-in-batch", n=2)
    assert proc.returncode == EXIT_INTERRUPTED, proc.stderr
    assert "interrupted; continue with: python -m evo_nos.run --resume" in proc.stdout
    stopped = load_checkpoint(folder_of(tmp_path))
    assert stopped["status"] == "interrupted"
    assert stopped["counts"]["evaluations"] == BATCH            # the 2nd batch is dropped
    (parent,) = parent_runs(store)
    assert parent.info.status == "KILLED"


def test_ctrl_c_during_the_final_writes_lets_them_finish(tmp_path, store, reference):
    proc = run(tmp_path, store, *ARGS, fault="sigint-in-final-writes", n=1)
    assert proc.returncode == EXIT_INTERRUPTED
    assert last_line(proc) == "SIGINT came as the search ended: it is finished and saved whole"
    finished = load_checkpoint(folder_of(tmp_path))
    same_search(finished, reference[0])
    (parent,) = parent_runs(store)
    assert parent.info.status == "FINISHED" and parent.info.run_id == finished["run_id"]
    assert "best_rule" in parent.data.tags


IMPORT_FAULT = """
import os, runpy, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
module = sys.argv[1]

class SignalOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == module:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, SignalOnImport())
sys.argv = ["evo_nos.run"] + sys.argv[2:]
runpy.run_module("evo_nos.run", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("module", ["torch", "mlflow"])
def test_ctrl_c_during_the_imports_is_one_line_and_leaves_nothing(tmp_path, store, module):
    """The signal comes as python -m evo_nos.run imports torch (or mlflow): held until
    the imports are done, then the command stops before it makes anything."""
    proc = subprocess.run([sys.executable, "-c", IMPORT_FAULT, module, *ARGS], cwd=tmp_path,
                          env=dict(os.environ, MLFLOW_TRACKING_URI=store),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_INTERRUPTED, proc.stderr
    assert last_line(proc) == "interrupted before the search started: nothing was saved"
    assert proc.stdout == ""
    assert not (tmp_path / "runs").exists()
    assert parent_runs(store) == []


# -- the disk ---------------------------------------------------------------------------------
def test_a_full_disk_at_run_json_rolls_back_in_one_line_and_resume_finishes(tmp_path, store,
                                                                             reference):
    proc = run(tmp_path, store, *ARGS, fault="no-space-for-summary", n=3)
    assert proc.returncode == 1
    folder = folder_of(tmp_path)
    stopped = load_checkpoint(folder)
    assert last_line(proc) == (
        f"error: {folder.resolve().relative_to(tmp_path.resolve())}/run.json cannot be "
        "written: no space left on the device: free some space, then python -m evo_nos.run "
        f"--resume {stopped['run_id']} --out runs (the search is saved to its last "
        "checkpoint)")
    assert stopped["status"] == "interrupted"
    assert stopped["counts"]["evaluations"] == 3 * BATCH        # its checkpoint was written
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]   # nothing half
    (parent,) = parent_runs(store)
    assert parent.info.status == "KILLED"
    assert resume(tmp_path, store) == 0                          # space again
    same_search(load_checkpoint(folder), reference[0])
    (parent,) = parent_runs(store)
    assert parent.info.status == "FINISHED"
    assert fitness_points(store, parent.info.run_id) == sorted(reference[1])


def test_a_full_disk_at_the_checkpoint_falls_back_to_the_last_one_and_resume_finishes(
        tmp_path, store, reference):
    proc = run(tmp_path, store, *ARGS, fault="no-space-for-checkpoint", n=3)
    assert proc.returncode == 1
    line = last_line(proc)
    assert line.startswith("error: ") and "checkpoint.pkl cannot be written: no space" in line
    assert "then python -m evo_nos.run --resume" in line
    folder = folder_of(tmp_path)
    assert not (folder / CHECKPOINT_FILE).exists()       # moved aside, the new one not written
    stopped = load_checkpoint(folder)                    # so the previous one is the state
    assert stopped["counts"]["evaluations"] == 2 * BATCH
    (parent,) = parent_runs(store)
    assert parent.info.status == "KILLED"
    assert resume(tmp_path, store) == 0
    same_search(load_checkpoint(folder), reference[0])


def refuse_writes_under(monkeypatch, folder: Path, code: int):
    """Writes under ``folder`` fail with OSError ``code`` (EROFS, EACCES): how a
    read-only or foreign folder behaves for a user who is not root (chmod does not stop
    root, who runs CI)."""
    folder = folder.resolve()

    def refused(path):
        path = Path(path).resolve()
        if path == folder or folder in path.parents:
            raise OSError(code, os.strerror(code), str(path))

    mkdir, os_open = Path.mkdir, os.open

    def make(self, *args, exist_ok=False, **kwargs):
        if not (exist_ok and self.is_dir()):     # as mkdir does: an existing folder is fine
            refused(self)
        return mkdir(self, *args, exist_ok=exist_ok, **kwargs)
    monkeypatch.setattr(Path, "mkdir", make)
    monkeypatch.setattr(os, "open", lambda path, *a, **k: (refused(path),
                                                           os_open(path, *a, **k))[1])


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_out_on_a_read_only_folder_is_one_line_naming_it(tmp_path, store, monkeypatch,
                                                          capsys, code):
    locked = tmp_path / "locked"
    locked.mkdir()
    refuse_writes_under(monkeypatch, locked, code)
    with pytest.raises(SystemExit) as stop:
        cli.main([*ARGS[:-1], str(locked / "runs"), "--tracking-uri", store])
    message = str(stop.value.code)
    assert "\n" not in message and stop.value.code != 0
    what = "is on a read-only file system" if code == errno.EROFS else \
        "cannot be written (permission denied)"
    assert message == (f"error: {(locked / 'runs').resolve()} {what}: give a "
                       + ("folder on a writable disk (--out DIR, or run elsewhere)"
                          if code == errno.EROFS else
                          "folder you can write (--out DIR), or fix its permissions"))
    assert list(locked.iterdir()) == []
    assert parent_runs(store) == []


def test_resume_of_a_search_on_a_read_only_disk_is_one_line(tmp_path, store, monkeypatch):
    first = run(tmp_path, store, *ARGS, fault="sigint-in-batch", n=3)
    assert first.returncode == EXIT_INTERRUPTED
    folder = folder_of(tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    refuse_writes_under(monkeypatch, folder, errno.EROFS)
    with pytest.raises(SystemExit) as stop:
        resume(tmp_path, store)
    message = str(stop.value.code)
    assert message.startswith(f"error: {(folder / LOCK_FILE).resolve()} is on a read-only "
                              "file system: give a folder on a writable disk")
    assert "then python -m evo_nos.run --resume" in message and "\n" not in message
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod: the simulated "
                    "EROFS/EACCES tests above stand for it")
def test_out_in_a_folder_without_write_permission_for_real(tmp_path, store):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        proc = run(tmp_path, store, *ARGS[:-1], str(locked / "runs"))
    finally:
        locked.chmod(0o700)
    assert proc.returncode == 1
    assert last_line(proc) == (f"error: {locked / 'runs'} cannot be written (permission "
                               "denied): give a folder you can write (--out DIR), or fix "
                               "its permissions")


def test_a_full_disk_before_the_first_batch_leaves_nothing_behind(tmp_path, store,
                                                                  monkeypatch):
    folder = new_search_dir(tmp_path / "runs", "random-seed0")
    search = Search(make_strategy("random", SearchSpace(), 0), StandInBackend("powersign"),
                    budget=4, progress=False, checkpoint_dir=folder,
                    tracker=Tracker(tracking_uri=store))

    def full(directory, payload):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(driver, "write_checkpoint", full)
    with pytest.raises(SaveError) as err:
        search.run()
    assert err.value.errno == errno.ENOSPC and err.value.filename.endswith(CHECKPOINT_FILE)
    assert not folder.exists()
    assert parent_runs(store) == []


# -- the MLflow store -------------------------------------------------------------------------
def test_searches_started_together_in_a_fresh_folder_all_run_and_keep_apart(tmp_path):
    """Default store (./mlflow.db, created by whoever comes first), same strategy and
    seed, started in the same moment: every search finishes in a folder of its own."""
    command = [sys.executable, "-m", "evo_nos.run", *ARGS]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 3
    states = [load_checkpoint(f) for f in folders]
    assert len({s["run_id"] for s in states}) == 3
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert sorted(r.info.run_id for r in parent_runs(uri)) == sorted(s["run_id"] for s in states)
    assert [r.info.status for r in parent_runs(uri)] == ["FINISHED"] * 3
    assert all(scores(s["history"]) == scores(states[0]["history"]) for s in states)


def test_new_search_folders_never_collide(tmp_path):
    names = [new_search_dir(tmp_path, "evo-seed0-20261202-120000").name for _ in range(3)]
    assert names == ["evo-seed0-20261202-120000", "evo-seed0-20261202-120000-2",
                     "evo-seed0-20261202-120000-3"]


def test_a_store_that_turns_read_only_mid_search_stops_it_in_one_line_and_resume_finishes(
        tmp_path, store, reference):
    proc = run(tmp_path, store, *ARGS, fault="read-only-store", n=3)   # 3rd batch's metrics
    assert proc.returncode == 1
    line = last_line(proc)
    assert line.startswith("error: the MLflow store") and "readonly database" in line
    assert "--resume" in line
    stopped = load_checkpoint(folder_of(tmp_path))
    assert stopped["status"] == "interrupted"
    assert stopped["counts"]["evaluations"] == 2 * BATCH   # back to the last logged batch
    assert resume(tmp_path, store) == 0
    same_search(load_checkpoint(folder_of(tmp_path)), reference[0])
    (parent,) = parent_runs(store)
    assert parent.info.status == "FINISHED"
    assert fitness_points(store, parent.info.run_id) == sorted(reference[1])   # no doubles


def test_an_unreachable_tracking_server_is_one_line_at_once(tmp_path):
    proc = run(tmp_path, "http://127.0.0.1:9", *ARGS)
    assert proc.returncode == 1
    line = last_line(proc)
    assert line.startswith("error: cannot reach the MLflow tracking server http://127.0.0.1:9")
    assert "unset MLFLOW_TRACKING_URI" in line
    assert not (tmp_path / "runs").exists()


def test_a_damaged_store_is_named_with_what_to_do(tmp_path):
    (tmp_path / "mlflow.db").write_bytes(b"not a database at all")
    proc = run(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}", *ARGS)
    assert proc.returncode == 1
    line = last_line(proc)
    assert line.startswith("error: cannot open the MLflow store") and "move it aside" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", [["evo_nos.export", "--run", "0123abcd"],
                                     ["evo_nos.compare"],
                                     ["evo_nos.transfer", "--run", "0123abcd", "--quick"]])
def test_read_only_commands_never_create_a_store(tmp_path, command):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-m", *command], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [line for line in proc.stderr.splitlines()
                                        if line.startswith("error: no MLflow store at ")]
    assert len(proc.stderr.splitlines()) == 1 and "--tracking-uri" in proc.stderr
    assert list(tmp_path.iterdir()) == []                  # no mlflow.db, no lock


# -- one writer per search --------------------------------------------------------------------
def test_a_search_held_by_a_live_process_refuses_a_second_writer(tmp_path, store):
    first = run(tmp_path, store, *ARGS, fault="sigint-in-batch", n=3)
    assert first.returncode == EXIT_INTERRUPTED
    folder = folder_of(tmp_path)
    before = (folder / CHECKPOINT_FILE).read_bytes()
    with FileLock(folder / LOCK_FILE):        # this test process plays the live writer
        second = run(tmp_path, store, "--resume", "last", "--quiet", "--out", "runs")
    assert second.returncode == 1
    assert last_line(second) == (f"error: the search in runs/{folder.name} is running in "
                                 f"another process (pid {os.getpid()} on {os.uname()[1]}): "
                                 "wait for it to end, or stop it first")
    assert (folder / CHECKPOINT_FILE).read_bytes() == before
    (parent,) = parent_runs(store)
    assert parent.info.status == "KILLED"


def standin_search(folder, **kwargs):
    strategy = make_strategy("random", SearchSpace(), 0)
    return Search(strategy, StandInBackend("powersign"), budget=12, batch_size=3,
                  progress=False, checkpoint_dir=folder, **kwargs)


def resumed_standin(folder):
    return Search.resume(folder, make_strategy("random", SearchSpace(), 0),
                         StandInBackend("powersign"), progress=False)


class InterruptedStandIn(StandInBackend):
    """Ctrl+C in its second batch."""
    calls = 0

    def evaluate(self, rules):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return super().evaluate(rules)


def test_a_search_run_by_another_process_since_it_was_loaded_is_refused(tmp_path):
    strategy = make_strategy("random", SearchSpace(), 0)
    assert Search(strategy, InterruptedStandIn("powersign"), budget=12, batch_size=3,
                  progress=False, checkpoint_dir=tmp_path).run().status == "interrupted"
    first, second = resumed_standin(tmp_path), resumed_standin(tmp_path)
    assert first.run().status == "finished"
    with pytest.raises(SearchInUse, match="was run by another process after this one "
                                          "loaded it: resume it again"):
        second.run()
    assert load_checkpoint(tmp_path)["trainings"] == 12


def test_a_new_search_never_overwrites_a_folder_that_holds_one(tmp_path):
    standin_search(tmp_path).run()
    with pytest.raises(ValueError, match="already holds a search"):
        standin_search(tmp_path).run()


# -- damaged checkpoints ----------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    """A folder with a finished stand-in search: its checkpoint and the previous one."""
    standin_search(tmp_path).run()
    return tmp_path


def damage_cases(data: bytes):
    yield "truncated", data[:len(data) // 2]
    yield "emptied", b""
    yield "garbage", bytes(random.Random(1).getrandbits(8) for _ in range(len(data)))
    state = pickle.loads(data.partition(b"\n")[2])
    yield "no config", frame(pickle.dumps({k: v for k, v in state.items() if k != "config"}))


def test_truncated_emptied_garbage_or_incomplete_checkpoints_are_refused_by_name(saved):
    path = saved / CHECKPOINT_FILE
    good = path.read_bytes()
    for case, data in damage_cases(good):
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as refused:
            load_checkpoint(saved)
        message = str(refused.value)
        assert "\n" not in message, case
        assert f"mv {saved / PREVIOUS_FILE} {path}" in message, case
    path.write_bytes(good)
    assert load_checkpoint(saved)["trainings"] == 12


def test_every_one_of_300_single_bit_flips_is_refused(saved):
    path = saved / CHECKPOINT_FILE
    good = path.read_bytes()
    rng = random.Random(0)
    refused = 0
    for _ in range(300):
        bit = rng.randrange(len(good) * 8)
        flipped = bytearray(good)
        flipped[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(flipped))
        try:
            load_checkpoint(saved)
        except CheckpointError:
            refused += 1
    assert refused == 300


def test_a_checkpoint_lost_between_its_two_renames_falls_back_to_the_previous_one(saved):
    previous = load_checkpoint(saved / PREVIOUS_FILE)
    (saved / CHECKPOINT_FILE).unlink()
    assert scores(load_checkpoint(saved)["history"]) == scores(previous["history"])


def test_a_damaged_checkpoint_whose_previous_one_is_damaged_too_says_so(saved):
    (saved / CHECKPOINT_FILE).write_bytes(b"")
    (saved / PREVIOUS_FILE).write_bytes(b"x")
    with pytest.raises(CheckpointError, match="cannot be resumed; start it again"):
        load_checkpoint(saved)


def test_format_1_checkpoints_are_still_read(saved):
    state = load_checkpoint(saved)
    (saved / CHECKPOINT_FILE).write_bytes(pickle.dumps({**state, "version": 1}))
    assert load_checkpoint(saved)["history"] == state["history"]
    assert set(REQUIRED_KEYS) <= set(load_checkpoint(saved))


def test_a_checkpoints_pickle_is_its_search_state_as_plain_data(saved):
    raw = pickle.loads((saved / CHECKPOINT_FILE).read_bytes().partition(b"\n")[2])
    state = SearchState.load(saved)
    plain = state.as_dict()
    assert list(plain) == list(raw)                    # the same keys, in the same order
    for key in set(raw) - {"rng"}:                     # (torch pickles a tensor afresh)
        assert pickle.dumps(plain[key]) == pickle.dumps(raw[key]), key
    assert state.funnel == FunnelSettings() and state.spent == state.trainings == 12


def test_a_checkpoint_without_the_keys_added_since_resumes_as_they_meant(saved):
    raw = load_checkpoint(saved)
    old = {k: v for k, v in raw.items() if k not in ADDED_KEYS}
    (saved / CHECKPOINT_FILE).write_bytes(frame(pickle.dumps(old)))
    state = SearchState.load(saved)
    assert (state.spent, state.final_trainings, state.funnel) == \
        (None, 0, FunnelSettings(funnel_seeds=1, final_seeds=0))
    search = resumed_standin(saved)
    assert (search.spent, search.funnel_seeds, search.final_seeds) == (12, 1, 0)
    assert search.run().status == "finished"
    (saved / CHECKPOINT_FILE).write_bytes(frame(pickle.dumps(
        {k: v for k, v in raw.items() if k != "elapsed"})))
    with pytest.raises(CheckpointError, match=r"not a complete evo_nos checkpoint \(no elapsed\)"):
        resumed_standin(saved)


def test_resume_of_a_damaged_checkpoint_is_one_line_and_the_previous_one_finishes_the_search(
        tmp_path, store, reference):
    assert run(tmp_path, store, *ARGS, fault="sigint-in-batch", n=4).returncode == \
        EXIT_INTERRUPTED
    folder = folder_of(tmp_path)
    path = folder / CHECKPOINT_FILE
    damaged = path.read_bytes()[:-100]
    path.write_bytes(damaged)
    proc = run(tmp_path, store, "--resume", "last", "--quiet", "--out", "runs")
    assert proc.returncode == 1
    line = last_line(proc)
    assert line.startswith(f"error: runs/{folder.name}/{CHECKPOINT_FILE} is damaged")
    assert f"mv runs/{folder.name}/{PREVIOUS_FILE} runs/{folder.name}/{CHECKPOINT_FILE}" in line
    assert path.read_bytes() == damaged                     # refused, and nothing written
    os.replace(folder / PREVIOUS_FILE, path)                # what the message says to do
    assert resume(tmp_path, store) == 0
    same_search(load_checkpoint(folder), reference[0])
    (parent,) = parent_runs(store)
    assert parent.info.status == "FINISHED"


# -- bad data on a fresh start ----------------------------------------------------------------
def test_data_that_cannot_be_loaded_stops_the_command_before_it_makes_anything(tmp_path,
                                                                               store):
    empty = tmp_path / "images"
    (empty / "train").mkdir(parents=True)
    proc = run(tmp_path, store, "--preset", "smoke", "--data", f"imagefolder:{empty}",
               "--budget", "2", "--quiet", "--out", "runs")
    assert proc.returncode == 1
    assert last_line(proc) == (f"error: {empty}/train has no class folders (expected "
                               f"{empty}/train/<class>/*.jpg)")
    assert not (tmp_path / "runs").exists()
    assert parent_runs(store, deleted=True) == []


class FailingStandIn(StandInBackend):
    """Its data is gone by the first batch (a cluster's workers cannot read it)."""

    def evaluate(self, rules):
        raise DataError("the workers cannot read the images")


def test_a_search_that_fails_before_training_anything_leaves_nothing_behind(tmp_path, store):
    folder = new_search_dir(tmp_path / "runs", "random-seed0")
    search = Search(make_strategy("random", SearchSpace(), 0), FailingStandIn("powersign"),
                    budget=4, progress=False, checkpoint_dir=folder,
                    tracker=Tracker(tracking_uri=store))
    with pytest.raises(DataError, match="cannot read the images"):
        search.run()
    assert not folder.exists()
    assert parent_runs(store) == []
    assert [r.info.lifecycle_stage for r in parent_runs(store, deleted=True)] == ["deleted"]
