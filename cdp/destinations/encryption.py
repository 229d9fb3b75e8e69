"""PGP encryption of a destination's files for its partner, with the public key of the destination's connection.

``encryption: pgp`` on a file destination encrypts every data file (binary OpenPGP, the partner's public key
as the only recipient) just before it is delivered, under its rendered name plus ``.pgp``. The key is the
ASCII-armoured public key in the ``pgp_public_key`` extra of the Airflow connection the destination names;
no private key is ever needed or accepted. GnuPG's ``gpg`` does the work (through python-gnupg) in a keyring
that lives only as long as the export, so nothing is imported into a user's keyring.

What the ledger and the manifest record is the file as rendered, before encryption (name with ``.pgp``,
rows, bytes, SHA-256): OpenPGP encrypts under a fresh session key each time, so ciphertexts of the same file
differ, while the rendered file is deterministic and proves what was sent. The manifest is not encrypted (it
holds no profile data) and says which key the files were encrypted for.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from cdp.errors import CdpError

PGP_EXTENSION = ".pgp"
KEY_EXTRA = "pgp_public_key"

# python-gnupg logs each gpg exchange at DEBUG (key material included): keep it out of the task logs.
logging.getLogger("gnupg").setLevel(logging.WARNING)


class EncryptionError(CdpError):
    """The destination's encryption cannot be set up (missing or unusable key): a configuration error."""


def encrypted_name(name: str) -> str:
    """The delivered name of a rendered file: ``audience.csv.gz`` -> ``audience.csv.gz.pgp``."""
    return name + PGP_EXTENSION


def public_key_of(connection: Any, connection_id: str) -> str:
    """The armoured public key in the connection's ``pgp_public_key`` extra, or an EncryptionError saying where
    to put it."""
    extra = connection.extra_dejson if connection is not None else {}
    key = extra.get(KEY_EXTRA) if isinstance(extra, dict) else None
    if not isinstance(key, str) or not key.strip():
        raise EncryptionError(
            f"encryption: pgp needs the partner's public key: put it (ASCII-armoured, '-----BEGIN PGP PUBLIC KEY "
            f"BLOCK-----') in the extra '{KEY_EXTRA}' of the Airflow connection '{connection_id}'")
    return key


@dataclass
class PgpEncryptor:
    """Encrypts files for one recipient in a private, temporary GnuPG home; use it as a context manager."""

    public_key: str
    connection_id: str

    def __post_init__(self) -> None:
        import gnupg

        if "PRIVATE KEY" in self.public_key:
            raise EncryptionError(
                f"the extra '{KEY_EXTRA}' of connection '{self.connection_id}' holds a private key: put only the "
                "partner's public key there (never a private key)")
        self._home = tempfile.mkdtemp(prefix="cdp-gpg-")
        try:
            self._gpg = gnupg.GPG(gnupghome=self._home)
        except (OSError, ValueError, RuntimeError) as exc:
            shutil.rmtree(self._home, ignore_errors=True)
            raise EncryptionError(f"GnuPG (gpg) cannot be started for encryption: pgp ({exc}); install GnuPG "
                                  "(Debian: apt-get install gnupg) on every worker") from None
        imported = self._gpg.import_keys(self.public_key)
        keys = [k for k in self._gpg.list_keys() if k["fingerprint"] in set(imported.fingerprints)]
        usable = [k for k in keys if "E" in k.get("cap", "") and k.get("trust") not in ("r", "e")]
        if not usable:
            self.close()
            why = "no key could be read" if not keys else "the key is revoked, expired or cannot encrypt"
            raise EncryptionError(
                f"the extra '{KEY_EXTRA}' of connection '{self.connection_id}' is not a usable PGP public key "
                f"({why}); export it with 'gpg --armor --export <key id>'")
        if len(usable) > 1:
            self.close()
            raise EncryptionError(f"the extra '{KEY_EXTRA}' of connection '{self.connection_id}' holds "
                                  f"{len(usable)} keys: give exactly one recipient's public key")
        self.fingerprint: str = usable[0]["fingerprint"]

    def encrypt(self, source: str, target: str) -> None:
        """Write ``source`` encrypted for the recipient (binary OpenPGP) to ``target``."""
        with open(source, "rb") as handle:
            # always_trust: the key was imported from the connection just now, so the web of trust has nothing
            # to say about it; no compression, since the files are gzip or Parquet already when it would help.
            result = self._gpg.encrypt_file(handle, [self.fingerprint], always_trust=True, armor=False,
                                            output=target, extra_args=["--compress-algo", "none"])
        if not result.ok:
            raise EncryptionError(f"gpg could not encrypt {source} for key {self.fingerprint}: {result.status}")

    def close(self) -> None:
        """Remove the temporary keyring."""
        shutil.rmtree(self._home, ignore_errors=True)

    def __enter__(self) -> PgpEncryptor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
