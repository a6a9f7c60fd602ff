"""Property: no interleaving of claim, heartbeat, lease expiry, reap, commit and retry across
several workers loses a job or records two outcomes for one job.

A hypothesis state machine drives three simulated workers against a real ``SpoolDir`` in a
temporary directory (sync, no fsync) and keeps a model of where each job must be. After every
step the spool is scanned: each job is in exactly one place (pending, scheduled, one running
directory, or one outcome record), the place the model predicts, with the start count it
predicts; a commit or requeue through a claim that a reaper took back returns False (the
fence) and changes nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from jobq.admin import retry_job
from jobq.layout import is_fence_name
from jobq.lease import LOST_ALLOWANCE, reap_expired, requeue_held
from jobq.model import Job, Outcome, decode_record, encode_record
from jobq.spool import Claimed, Finish, SpoolDir, commits

QUEUE = "q"
WORKERS = 3
fence_beside = commits._fence_beside
LONG_AGO = 10_000.0


@dataclass
class SimWorker:
    """A simulated worker: its current id, and what the model knows about its lease."""

    index: int
    generation: int = 0
    registered: bool = True
    expired: bool = False

    @property
    def id(self) -> str:
        """Worker ids change when a worker comes back after losing its lease."""
        return f"sim.{self.index}.g{self.generation}"


@dataclass
class Claim:
    """A claim a simulated worker believes it holds (it may have been reaped since)."""

    worker_id: str
    held: Claimed


@dataclass
class ModelJob:
    """Where the model says a job is, and how often it was started."""

    job: Job
    place: str = "pending"  # pending | scheduled | running:WORKER | done | failed
    starts: int = 0
    recorded_by: str | None = None


class SpoolMachine(RuleBasedStateMachine):
    """Random interleavings of worker and reaper steps against one real spool."""

    def __init__(self) -> None:
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="jobq-prop-")
        self.spool = SpoolDir(self.root, durable=False)
        self.spool.ensure_queue(QUEUE)
        self.workers = [SimWorker(i) for i in range(WORKERS)]
        for w in self.workers:
            self._register(w)
        self.jobs: dict[str, ModelJob] = {}
        self.claims: list[Claim] = []
        self.next_id = 0
        self.committing: str | None = None  # a job whose outcome is decided, being committed

    def teardown(self) -> None:
        """Remove the temporary spool."""
        shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------

    def _register(self, w: SimWorker) -> None:
        # A huge lease: only an explicit `expire` step makes a worker look dead.
        self.spool.register_worker(w.id, {"id": w.id, "pid": 0, "lease": LONG_AGO / 2})
        w.registered, w.expired = True, False

    def _live(self, claim: Claim) -> bool:
        return self.jobs[claim.held.job_id].place == f"running:{claim.worker_id}"

    def _claim_at(self, pick: int) -> Claim | None:
        if not self.claims:
            return None
        return self.claims[pick % len(self.claims)]

    def _requeued_by_reaper(self, job_id: str, holder: str) -> None:
        """The model of ``requeue_held``: back to pending, or failed as a poison job."""
        model = self.jobs[job_id]
        if model.job.may_retry(model.starts - LOST_ALLOWANCE):
            model.place = "pending"
        else:
            model.place, model.recorded_by = "failed", holder

    def _lose_worker(self, w: SimWorker, who: str) -> None:
        for model in self.jobs.values():
            if model.place == f"running:{w.id}" and model.job.id != self.committing:
                self._requeued_by_reaper(model.job.id, who)

    def _take_claim(self, pick: int, failed: bool) -> tuple[Claim, bool, Finish] | None:
        """A claim the worker now ends, whether it is still live, and its outcome to commit."""
        claim = self._claim_at(pick)
        if claim is None:
            return None
        self.claims.remove(claim)
        model = self.jobs[claim.held.job_id]
        state = "failed" if failed else "done"
        outcome = Outcome(
            state, claim.held.name.attempts, None, time.time(), worker=claim.worker_id
        )
        record = encode_record(model.job, outcome)
        return claim, self._live(claim), Finish(claim.held.path, QUEUE, model.job.id, state, record)

    # -- rules -----------------------------------------------------------------------------

    @initialize(retries=st.lists(st.integers(0, 2), min_size=2, max_size=6))
    def some_jobs(self, retries: list[int]) -> None:
        for n in retries:
            self.enqueue(n, delay=False)

    @rule(retries=st.integers(0, 2), delay=st.booleans())
    def enqueue(self, retries: int, delay: bool) -> None:
        self.next_id += 1
        job = Job(
            id=f"j{self.next_id}",
            name="prop.job",
            queue=QUEUE,
            retries=retries,
            retry_delay=0.0,
            enqueued_at=time.time(),
        )
        assert self.spool.publish([job], due_us=1 if delay else None) == [True]
        self.jobs[job.id] = ModelJob(job, place="scheduled" if delay else "pending")

    @precondition(lambda self: any(m.place == "pending" for m in self.jobs.values()))
    @rule(w=st.integers(0, WORKERS - 1))
    def claim(self, w: int) -> None:
        worker = self.workers[w]
        names = sorted(self.spool.pending_names(QUEUE))
        if not names:
            return
        held = self.spool.claim(worker.id, QUEUE, names[0])
        if not worker.registered:
            # Reaped without knowing it: its running directory is gone, so it cannot claim.
            assert held is None
            return
        assert held is not None
        model = self.jobs[held.job_id]
        assert model.place == "pending"
        model.place, model.starts = f"running:{worker.id}", model.starts + 1
        assert held.name.attempts == model.starts
        self.claims.append(Claim(worker.id, held))

    @rule(w=st.integers(0, WORKERS - 1))
    def heartbeat(self, w: int) -> None:
        worker = self.workers[w]
        assert self.spool.heartbeat(worker.id) == worker.registered
        worker.expired = False

    @precondition(lambda self: any(w.registered and not w.expired for w in self.workers))
    @rule(w=st.integers(0, WORKERS - 1))
    def expire(self, w: int) -> None:
        """The worker falls silent (killed, frozen, partitioned) for longer than its lease."""
        worker = self.workers[w]
        if worker.registered:
            past = time.time() - LONG_AGO
            os.utime(self.spool.worker_file(worker.id), (past, past))
            worker.expired = True

    @precondition(lambda self: any(w.expired for w in self.workers))
    @rule(r=st.integers(0, WORKERS - 1))
    def reap(self, r: int) -> None:
        reaper = self.workers[r]
        expected = sorted(
            w.id for w in self.workers if w.registered and w.expired and w is not reaper
        )
        assert sorted(reap_expired(self.spool, reaper.id)) == expected
        for w in self.workers:
            if w.id in expected:
                self._lose_worker(w, reaper.id)
                w.registered = False

    @rule(w=st.integers(0, WORKERS - 1))
    def rejoin(self, w: int) -> None:
        """What a worker does when it notices its lease is gone: hand back, new id."""
        worker = self.workers[w]
        old = worker.id
        for held in self.spool.running_jobs(old):
            requeue_held(self.spool, held, who=old)
        self._lose_worker(worker, old)
        self.spool.deregister_worker(old)
        worker.generation += 1
        self._register(worker)

    @precondition(lambda self: bool(self.claims))
    @rule(pick=st.integers(0, 1000), failed=st.booleans())
    def commit(self, pick: int, failed: bool) -> None:
        taken = self._take_claim(pick, failed)
        if taken is None:
            return
        claim, live, finish = taken
        assert self.spool.commit([finish]) == [live]
        if live:
            self.jobs[finish.job_id].place = finish.state
            self.jobs[finish.job_id].recorded_by = claim.worker_id

    @precondition(lambda self: bool(self.claims))
    @rule(
        pick=st.integers(0, 1000),
        r=st.integers(0, WORKERS - 1),
        failed=st.booleans(),
        step=st.sampled_from([".rec", "fence"]),
        beside=st.booleans(),
    )
    def commit_while_reaped(self, pick: int, r: int, failed: bool, step: str, beside: bool) -> None:
        """The worker freezes inside its commit and is reaped; then it carries on.

        It freezes just before its record's rename (``.rec``) or before removing its fence
        file (``fence``), committing with the fence beside the job file or, as on a network
        filesystem, with the job file moved to the record's place. Its outcome stands.
        """
        taken = self._take_claim(pick, failed)
        if taken is None:
            return
        claim, live, finish = taken
        model = self.jobs[finish.job_id]
        frozen = next((w for w in self.workers if w.id == claim.worker_id), None)
        reaper = self.workers[r]
        real_rename, real_unlink = os.rename, os.unlink

        def reaped_meanwhile() -> None:
            os.rename, os.unlink = real_rename, real_unlink
            if frozen is None or frozen is reaper or not frozen.registered:
                return
            past = time.time() - LONG_AGO
            os.utime(self.spool.worker_file(frozen.id), (past, past))
            frozen.expired = True
            self.reap(r)  # the model's reap: every other job of the frozen worker goes back

        def rename(src: str, dst: str) -> None:
            if step == ".rec" and str(src).endswith(".rec"):
                reaped_meanwhile()
            real_rename(src, dst)

        def unlink(path: str) -> None:
            if step == "fence" and is_fence_name(os.path.basename(path)):
                reaped_meanwhile()
            real_unlink(path)

        os.rename, os.unlink = rename, unlink  # type: ignore[assignment]
        commits._fence_beside = lambda root: beside  # type: ignore[assignment]
        self.committing = model.job.id if live else None
        try:
            recorded = self.spool.commit([finish])
        finally:
            os.rename, os.unlink = real_rename, real_unlink
            commits._fence_beside = fence_beside
            self.committing = None
        assert recorded == [live]
        if live:
            model.place, model.recorded_by = finish.state, claim.worker_id

    @precondition(lambda self: bool(self.claims))
    @rule(pick=st.integers(0, 1000), later=st.booleans())
    def retry(self, pick: int, later: bool) -> None:
        """The worker's own retry after a failure: back to pending or scheduled."""
        claim = self._claim_at(pick)
        if claim is None:
            return
        self.claims.remove(claim)
        live = self._live(claim)
        due = int(time.time() * 1e6) + 10**12 if later else None
        assert self.spool.requeue(claim.held.path, QUEUE, claim.held.name, due) == live
        if live:
            self.jobs[claim.held.job_id].place = "scheduled" if later else "pending"

    @precondition(lambda self: any(m.place == "scheduled" for m in self.jobs.values()))
    @rule()
    def promote(self) -> None:
        self.spool.promote_due(QUEUE, 2**62)
        for model in self.jobs.values():
            if model.place == "scheduled":
                model.place = "pending"

    @precondition(lambda self: any(m.place == "failed" for m in self.jobs.values()))
    @rule(pick=st.integers(0, 1000))
    def operator_retry(self, pick: int) -> None:
        """``jobq retry JOB_ID`` on a dead job."""
        failed = sorted(j for j, m in self.jobs.items() if m.place == "failed")
        job_id = failed[pick % len(failed)]
        assert retry_job(self.spool, job_id) is True
        model = self.jobs[job_id]
        model.place, model.recorded_by = "pending", None
        model.job = replace(model.job, attempts_base=model.starts)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def every_job_is_in_exactly_one_predicted_place(self) -> None:
        found = self._scan()
        for job_id, model in self.jobs.items():
            places = found.get(job_id, [])
            assert len(places) == 1, f"{job_id}: expected one place, found {places}"
            (place, starts, recorded_by) = places[0]
            assert place == model.place, (job_id, place, model.place)
            if place in ("pending", "scheduled") or place.startswith("running:"):
                assert starts == model.starts, (job_id, starts, model.starts)
            else:
                assert recorded_by == model.recorded_by, (job_id, recorded_by)
        assert set(found) <= set(self.jobs)
        assert os.listdir(self.spool.path("tmp")) == []

    def _scan(self) -> dict[str, list[tuple[str, int, str | None]]]:
        found: dict[str, list[tuple[str, int, str | None]]] = {}

        def add(job_id: str, place: str, starts: int, by: str | None = None) -> None:
            found.setdefault(job_id, []).append((place, starts, by))

        for name in self.spool.pending_names(QUEUE):
            _, _, job_id, starts = name.removesuffix(".json").split("-")
            add(job_id, "pending", int(starts))
        for name in self.spool.scheduled_names(QUEUE):
            _, _, _, job_id, starts = name.removesuffix(".json").split("-")
            add(job_id, "scheduled", int(starts))
        for worker_id in self.spool.running_workers():
            for held in self.spool.running_jobs(worker_id):
                add(held.job_id, f"running:{worker_id}", held.name.attempts)
        for state in ("done", "failed", "cancelled"):
            for name in os.listdir(self.spool.path(state, QUEUE)):
                with open(self.spool.path(state, QUEUE, name), "rb") as f:
                    _, outcome = decode_record(f.read())
                add(name.removesuffix(".json"), state, -1, outcome.get("worker"))
        return found


# Modest sizes keep this to a few seconds; no deadline (filesystem timings vary).
SpoolMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_spool_interleavings = SpoolMachine.TestCase
