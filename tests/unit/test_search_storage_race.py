"""Two `nncli sweep` processes creating one new study database at once: the loser loads it again."""

import pytest

pytest.importorskip("optuna", reason="searches need the optional 'optuna' package (nncli[search])")

from nncli.runs.sweeps import study
from nncli.runs.sweeps.checks import SweepError


@pytest.mark.parametrize(
    "race",
    [
        "(sqlite3.OperationalError) table trial_user_attributes already exists",
        "(sqlite3.IntegrityError) UNIQUE constraint failed: studies.study_name",
        "(sqlite3.OperationalError) database is locked",
    ],
)
def test_a_lost_table_creation_race_is_retried(monkeypatch, race):
    calls = []

    def create(optuna, spec, direction):
        calls.append(direction)
        if len(calls) == 1:
            raise SweepError(f"--storage {spec['storage']}: {race}")
        return "the study"

    monkeypatch.setattr(study, "_create", create)
    monkeypatch.setattr(study.time, "sleep", lambda s: None)
    spec = {"metric": "val_loss", "storage": "sqlite:///x.db"}
    assert study.load_study(spec) == "the study" and len(calls) == 2


def test_other_storage_errors_are_not_retried(monkeypatch):
    def create(optuna, spec, direction):
        raise SweepError("--storage nope://: Could not parse SQLAlchemy URL")

    monkeypatch.setattr(study, "_create", create)
    with pytest.raises(SweepError, match="Could not parse"):
        study.load_study({"metric": "val_acc", "storage": "nope://"})
