from container.failure import FAILURE_LIMIT, UserError, failure_reason, write_failure


def _nested(depth: int):
    if depth == 0:
        raise ZeroDivisionError("division by zero in the innermost frame")
    _nested(depth - 1)


def test_user_error_is_the_message_alone(tmp_path):
    text = write_failure(tmp_path / "output" / "failure", UserError("channel 'train' is missing"))
    assert text == "UserError: channel 'train' is missing"
    assert (tmp_path / "output" / "failure").read_text() == text


def test_unexpected_error_keeps_innermost_frames():
    try:
        _nested(50)
    except ZeroDivisionError as err:
        text = failure_reason(err)
    assert text.startswith("ZeroDivisionError: division by zero in the innermost frame")
    assert "Traceback (innermost last)" in text
    assert text.rstrip().endswith('raise ZeroDivisionError("division by zero in the innermost frame")')
    assert len(text) <= FAILURE_LIMIT


def test_huge_messages_fit():
    assert len(failure_reason(UserError("x" * 5000))) <= FAILURE_LIMIT
    try:
        raise RuntimeError("y" * 5000)
    except RuntimeError as err:
        text = failure_reason(err)
    assert len(text) <= FAILURE_LIMIT and "test_failure.py" in text


def test_unwritable_failure_file_does_not_hide_the_cause(tmp_path, capsys):
    blocker = tmp_path / "output"
    blocker.write_text("a file where a folder should be")
    write_failure(blocker / "failure", UserError("bad epochs"))
    assert "bad epochs" in capsys.readouterr().err
