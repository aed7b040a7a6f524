"""pgkeep's age writer: what it writes is an age file two other implementations open (pyrage,
the Rust crate; the `age` command, Go) at every boundary of the STREAM's 64 KiB chunks."""

from __future__ import annotations

import base64
import io
import os
import subprocess
from pathlib import Path

import pyrage
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pgkeep.core.age_writer import _BECH32, CHUNK, AgeWriter, _b64, _polymod, recipient_key
from pgkeep.core.encryption import check_header
from pgkeep.errors import InvalidInput
from tests.core.test_encryption import AGE, age_keygen, needs_age

SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 7]


def _write(data: bytes, recipients: tuple[str, ...], piece: int = 10_000) -> bytes:
    writer = AgeWriter(recipients)
    out = [writer.process(data[i : i + piece]) for i in range(0, len(data), piece)]
    return b"".join(out) + writer.finish()


@pytest.mark.parametrize("size", SIZES)
def test_pyrage_opens_every_size_and_fed_any_way(size: int) -> None:
    identity = pyrage.x25519.Identity.generate()
    data = os.urandom(size)
    for piece in (1000, CHUNK, CHUNK + 3, 1 << 20):
        stored = _write(data, (str(identity.to_public()),), piece)
        assert pyrage.decrypt(stored, [identity]) == data
        # Ciphertext is the header, a 16-byte nonce and a 16-byte tag per chunk.
        chunks = max(1, -(-size // CHUNK))
        header = stored[: stored.index(b"\n---") + 1]
        header += stored[len(header) :].split(b"\n", 1)[0] + b"\n"
        check_header(header)
        assert len(stored) == len(header) + 16 + size + 16 * chunks


def test_each_recipient_opens_it_and_nobody_else() -> None:
    first, second, stranger = (pyrage.x25519.Identity.generate() for _ in range(3))
    recipients = (str(first.to_public()), str(second.to_public()))
    stored = _write(b"secret rows", recipients)
    assert pyrage.decrypt(stored, [first]) == b"secret rows"
    assert pyrage.decrypt(stored, [second]) == b"secret rows"
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(stored, [stranger])
    assert stored.count(b"\n-> X25519 ") == 2
    assert _write(b"secret rows", recipients) != stored  # fresh file key and nonce each time


def test_a_flipped_byte_anywhere_is_refused_by_the_reader() -> None:
    identity = pyrage.x25519.Identity.generate()
    stored = bytearray(_write(os.urandom(2 * CHUNK + 5), (str(identity.to_public()),)))
    for position in (30, stored.index(b"---") + 10, len(stored) // 2, len(stored) - 1):
        damaged = bytearray(stored)
        damaged[position] ^= 0x01
        with pytest.raises((pyrage.DecryptError, OSError)):  # header, payload
            pyrage.decrypt_io(io.BytesIO(bytes(damaged)), io.BytesIO(), [identity])


def test_a_chunk_cut_off_at_a_boundary_is_refused_by_the_reader() -> None:
    """The last chunk is flagged as last: dropping whole chunks off the end is detected."""
    identity = pyrage.x25519.Identity.generate()
    stored = _write(os.urandom(3 * CHUNK), (str(identity.to_public()),))
    with pytest.raises((pyrage.DecryptError, OSError)):
        pyrage.decrypt_io(io.BytesIO(stored[: -(CHUNK + 16)]), io.BytesIO(), [identity])


def _hkdf(secret: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt, info).derive(secret)


def _unb64(text: bytes) -> bytes:
    return base64.b64decode(text + b"=" * (-len(text) % 4))


def _opened(stored: bytes, key: X25519PrivateKey) -> tuple[bytes, bytes, list[bytes]]:
    """(file key, payload nonce, every stanza's ephemeral share) of an age file, unwrapped
    by hand with `key`, as the specification says, and proven by decrypting the payload."""
    lines = stored.split(b"\n")
    stanzas = []
    at = 1
    while lines[at].startswith(b"-> X25519 "):
        stanzas.append((_unb64(lines[at].split(b" ")[2]), _unb64(lines[at + 1])))
        at += 2
    assert lines[at].startswith(b"--- ")
    header_end = sum(len(line) + 1 for line in lines[: at + 1])
    nonce, payload = stored[header_end : header_end + 16], stored[header_end + 16 :]
    public = key.public_key().public_bytes_raw()
    file_keys = []
    for share, body in stanzas:
        shared = key.exchange(X25519PublicKey.from_public_bytes(share))
        wrap = ChaCha20Poly1305(_hkdf(shared, share + public, b"age-encryption.org/v1/X25519"))
        try:
            file_keys.append(wrap.decrypt(bytes(12), body, None))
        except InvalidTag:
            continue
    [file_key] = file_keys
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    assert aead.decrypt(bytes(11) + b"\x01", payload, None) == b"the same rows"
    return file_key, nonce, [share for share, _ in stanzas]


def test_each_file_has_a_fresh_secret_file_key_and_nonce_and_fresh_ephemeral_keys() -> None:
    """Two files of the same rows for the same recipients share nothing secret: the file key
    is random (not derived from anything), never written, not the nonce; each stanza has an
    ephemeral key of its own."""
    keys = [X25519PrivateKey.generate() for _ in range(2)]
    recipients = tuple(_bech32("age", k.public_key().public_bytes_raw()) for k in keys)
    files = [_write(b"the same rows", recipients) for _ in range(2)]
    file_keys, nonces, shares = set(), set(), set()
    for stored in files:
        opened = [_opened(stored, key) for key in keys]
        file_key, nonce, stanza_shares = opened[0]
        assert {o[0] for o in opened} == {file_key}  # every recipient unwraps the one key
        assert len(file_key) == 16
        assert len(nonce) == 16
        assert file_key not in stored
        assert nonce[:8] not in file_key
        assert file_key[:8] not in nonce
        assert file_key != bytes(16)
        file_keys.add(file_key)
        nonces.add(nonce)
        shares.update(stanza_shares)
        assert not set(stanza_shares) & {k.public_key().public_bytes_raw() for k in keys}
    assert len(file_keys) == 2
    assert len(nonces) == 2
    assert len(shares) == 4  # one ephemeral key per recipient and per file


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "age1",
        "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
        "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs0wxyz9",  # bad checksum
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",  # bech32, another prefix
        "age1 qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs",
    ],
)
def test_recipients_that_are_not_age_x25519_keys_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput, match=r"^not an age X25519 recipient \(age1…\)"):
        recipient_key(bad)


def test_no_recipient_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at least one recipient"):
        AgeWriter(())


def _bech32(hrp: str, data: bytes) -> str:
    """A bech32 string of `data` (for keys no generator would make)."""
    groups, acc, bits = [], 0, 0
    for byte in data:
        acc, bits = (acc << 8) | byte, bits + 8
        while bits >= 5:
            bits -= 5
            groups.append((acc >> bits) & 31)
    if bits:
        groups.append((acc << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    mod = _polymod([*expanded, *groups, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32[g] for g in groups + checksum)


def test_a_low_order_key_is_refused_before_anything_is_wrapped_to_it() -> None:
    """X25519 with the all-zero point gives an all-zero secret: anyone could unwrap."""
    public = str(pyrage.x25519.Identity.generate().to_public())
    assert _bech32("age", recipient_key(public)) == public  # the encoder above is bech32
    for point in (bytes(32), b"\x01" + bytes(31)):
        with pytest.raises(InvalidInput, match="low-order"):
            recipient_key(_bech32("age", point))
        with pytest.raises(InvalidInput):
            AgeWriter((_bech32("age", point),))


def _refused(recipient: str) -> str:
    with pytest.raises(InvalidInput) as caught:
        recipient_key(recipient)
    return caught.value.message


def test_bech32_strings_that_are_no_age_key_are_refused_each_for_its_reason() -> None:
    key = X25519PrivateKey.generate().public_key().public_bytes_raw()
    plain = "not an age X25519 recipient (age1…)"
    assert _refused(_bech32("age", key[:31])) == plain  # a key of another length
    assert _refused(_bech32("age", key + b"\x00")) == plain
    assert _refused(_bech32("agf", key)) == plain  # another prefix
    assert _refused(_bech32("", key)) == plain
    assert _refused("age1" + _bech32("age", key)[4:9]) == plain  # shorter than a checksum
    bad_sum = _bech32("age", key)[:-1] + ("q" if _bech32("age", key)[-1] != "q" else "p")
    assert _refused(bad_sum) == plain + ": bad checksum"
    assert _refused("age1" + "b" * 60) == plain  # not in bech32's alphabet


def test_recipient_keys_decode_to_the_public_key() -> None:
    raw = X25519PrivateKey.generate().public_key().public_bytes_raw()
    assert recipient_key(_bech32("age", raw)) == raw
    assert recipient_key(" " + _bech32("age", raw) + "\n") == raw
    identity = pyrage.x25519.Identity.generate()
    public = str(identity.to_public())
    assert len(recipient_key(public)) == 32
    assert recipient_key(public) == recipient_key(public.upper())  # bech32 is caseless
    assert recipient_key(public) != recipient_key(
        str(pyrage.x25519.Identity.generate().to_public())
    )


def test_base64_is_unpadded_and_keeps_every_other_character() -> None:
    assert _b64(b"\x00\x00\x17") == b"AAAX"
    assert _b64(b"ab") == b"YWI"
    assert _b64(b"a") == b"YQ"


@needs_age
@pytest.mark.parametrize("size", [0, CHUNK, 3 * CHUNK + 7])
def test_the_age_command_opens_what_the_writer_wrote(tmp_path: Path, size: int) -> None:
    assert AGE is not None
    key_file, public = age_keygen(tmp_path)
    data = os.urandom(size)
    opened = subprocess.run(
        [AGE, "-d", "-i", str(key_file)],
        input=_write(data, (public,)),
        check=True,
        capture_output=True,
    ).stdout
    assert opened == data
