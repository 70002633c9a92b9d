"""WeChat server-callback signatures and the encrypted-message envelope (PLATFORMS.md §4.4).

Pure functions, no I/O. Rules (developers.weixin.qq.com "接入概述" / "消息加解密说明"; the same
algorithms as wechatpy ``utils.check_signature`` and ``crypto.WeChatCrypto``):

- **Plaintext mode** (URL verification and every plaintext push):
  ``signature = sha1("".join(sorted([token, timestamp, nonce])))``, lowercase hex. Golden vector T9.
- **Encrypted mode** (``encrypt_type=aes``): ``msg_signature = sha1("".join(sorted([token,
  timestamp, nonce, Encrypt])))`` where ``Encrypt`` is the base64 ciphertext from the XML body.
- **Ciphertext**: ``base64(AES-256-CBC(key, iv=key[:16], pad(random16 + len(msg) as 4-byte
  big-endian + msg + appid)))`` with ``key = b64decode(EncodingAESKey + "=")`` (43 characters →
  32 bytes) and PKCS#7 padding to a **32-byte** block (WeChat's ``PKCS7Encoder.block_size``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PAD_BLOCK = 32


class CryptoError(ValueError):
    """An encrypted WeChat message that does not decrypt to a well-formed envelope."""


def callback_signature(token: str, timestamp: str, nonce: str) -> str:
    """``sha1(''.join(sorted([token, timestamp, nonce])))`` as lowercase hex (T9)."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def msg_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """The encrypted-mode ``msg_signature``: sha1 over the sorted four strings."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode()).hexdigest()


def signature_ok(expected: str, given: str | None) -> bool:
    """Constant-time comparison of hex signatures (case-insensitive, as WeChat sends lowercase)."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode())


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key from the 43-character EncodingAESKey."""
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CryptoError("EncodingAESKey is not base64") from exc
    if len(key) != 32:
        raise CryptoError("EncodingAESKey must decode to 32 bytes (43 base64 characters)")
    return key


def _pad(data: bytes) -> bytes:
    n = PAD_BLOCK - len(data) % PAD_BLOCK
    return data + bytes([n]) * n


def _unpad(data: bytes) -> bytes:
    if not data:
        raise CryptoError("empty plaintext")
    n = data[-1]
    if not 1 <= n <= PAD_BLOCK or n > len(data) or data[-n:] != bytes([n]) * n:
        raise CryptoError("bad PKCS#7 padding")
    return data[:-n]


def encrypt_message(
    encoding_aes_key: str, message: bytes, appid: str, *, random16: bytes | None = None
) -> str:
    """The base64 ``Encrypt`` value WeChat would send for ``message`` (used by the fake and by
    anyone replying in encrypted mode). ``random16`` is for test vectors only."""
    key = aes_key(encoding_aes_key)
    rand = random16 if random16 is not None else os.urandom(16)
    if len(rand) != 16:
        raise ValueError("random prefix must be 16 bytes")
    plain = _pad(rand + struct.pack(">I", len(message)) + message + appid.encode())
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


def decrypt_message(encoding_aes_key: str, encrypt: str) -> tuple[bytes, str]:
    """Decrypt an ``Encrypt`` value; returns ``(message, appid)``. The caller must check that
    ``appid`` is its own (the envelope binds the message to the app it was sent to)."""
    key = aes_key(encoding_aes_key)
    try:
        raw = base64.b64decode(encrypt, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CryptoError("Encrypt is not base64") from exc
    if not raw or len(raw) % 16:
        raise CryptoError("ciphertext is not a whole number of AES blocks")
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = _unpad(dec.update(raw) + dec.finalize())
    if len(plain) < 20:
        raise CryptoError("plaintext too short")
    (length,) = struct.unpack(">I", plain[16:20])
    if 20 + length > len(plain):
        raise CryptoError("message length exceeds the plaintext")
    message = plain[20 : 20 + length]
    try:
        appid = plain[20 + length :].decode()
    except UnicodeDecodeError as exc:
        raise CryptoError("appid is not text") from exc
    return message, appid
