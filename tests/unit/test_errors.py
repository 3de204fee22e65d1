"""The CNI error object (plugin/errors.py): the spec's codes, and what the runtime shows people
made safe."""

from plugin import errors
from plugin.errors import CniError, NotOnNode


def test_codes_are_the_specs_and_ours_are_100_and_up():
    assert (errors.INCOMPATIBLE_VERSION, errors.UNSUPPORTED_FIELD, errors.UNKNOWN_CONTAINER,
            errors.INVALID_ENV, errors.IO_FAILURE, errors.DECODE_FAILURE, errors.INVALID_CONFIG,
            errors.TRY_AGAIN_LATER, errors.NOT_AVAILABLE) == (1, 2, 3, 4, 5, 6, 7, 11, 50)
    ours = (errors.DELEGATE_FAILED, errors.NETWORK_COMMAND_FAILED, errors.CHECK_FAILED,
            errors.DEVICE_IN_USE, errors.NODE_ROOT_UNREACHABLE)
    assert all(code >= 100 for code in ours) and len(set(ours)) == len(ours)


def test_the_error_object_carries_the_version_and_escapes_what_a_pod_chose():
    e = CniError(errors.INVALID_CONFIG, "bad \x1b]52;c;x\x07 name", "see \u202eevil")
    assert e.to_dict("1.0.0") == {"cniVersion": "1.0.0", "code": 7,
                                  "msg": "bad \\x1b]52;c;x\\x07 name", "details": "see \\u202eevil"}
    assert str(e) == e.msg


def test_not_on_node_is_a_cni_error():
    e = NotOnNode(errors.INVALID_CONFIG, "gone")
    assert isinstance(e, CniError) and e.to_dict("1.1.0")["details"] == ""
