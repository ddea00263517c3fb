"""Integration tests written the way the original project's SDK tests are: a
``unittest.TestCase`` configured by ``SANDBOX_API_URL`` (with ``/v1``) and
``SANDBOX_API_TOKEN``, importing only names the original SDK exported.

Run by ``sdk/tests/test_original_compat.py`` against a real server, as a user of the
original would run it::

    SANDBOX_API_URL=http://127.0.0.1:8080/v1 SANDBOX_API_TOKEN=<jwt> python sessions_integration.py
"""

import os
import sys
import unittest
from datetime import datetime, timezone

from sandbox_sessions_sdk import (
    SandboxAPIError,
    SandboxConnectionError,
    SandboxOperationError,
    Session,
    SessionNotFoundError,
    SessionsClient,
    SessionStatus,
    UnauthorizedError,
)

MISSING = "00000000-0000-4000-8000-000000000000"


class SessionsIntegration(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.api_url = os.environ["SANDBOX_API_URL"]
        cls.token = os.environ["SANDBOX_API_TOKEN"]
        cls.client = SessionsClient(api_url=cls.api_url, bearer_token=cls.token, timeout=60)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def test_01_create_minimal(self):
        session = self.client.create_session()
        try:
            self.assertIsInstance(session, Session)
            self.assertEqual(session.status, SessionStatus.RUNNING)
            self.assertIsInstance(session.created_at, datetime)
            self.assertIsInstance(session.expires_at, datetime)
        finally:
            self.client.delete_session(session.session_id)

    def test_02_create_with_all_parameters(self):
        stamp = datetime.now(timezone.utc).isoformat()
        session = self.client.create_session(
            # pico's local runtime pulls a named image; this machine has no registry for it.
            ttl=7200, metadata={"test": "integration", "timestamp": stamp}
        )
        try:
            self.assertEqual(session.metadata.get("test"), "integration")
            self.assertEqual(session.metadata.get("timestamp"), stamp)
            self.assertEqual(session.ttl, 7200)
        finally:
            self.client.delete_session(session.session_id)

    def test_03_get(self):
        session = self.client.create_session(metadata={"test": "get_session"})
        try:
            fetched = self.client.get_session(session.session_id)
            self.assertEqual(fetched.session_id, session.session_id)
            self.assertEqual(fetched.status, session.status)
            self.assertEqual(fetched.metadata.get("test"), "get_session")
        finally:
            self.client.delete_session(session.session_id)

    def test_04_missing_session(self):
        with self.assertRaises(SessionNotFoundError):
            self.client.get_session(MISSING)
        with self.assertRaises(SessionNotFoundError):
            self.client.delete_session(MISSING)

    def test_05_delete(self):
        session = self.client.create_session()
        self.client.delete_session(session.session_id)
        with self.assertRaises(SessionNotFoundError):
            self.client.get_session(session.session_id)

    def test_06_list_with_pagination(self):
        made = [self.client.create_session(metadata={"index": i}) for i in range(3)]
        try:
            result = self.client.list_sessions(limit=10)
            for key in ("sessions", "total", "limit", "offset"):
                self.assertIn(key, result)
            self.assertGreaterEqual(result["total"], 3)
            ids = [s.session_id for s in result["sessions"]]
            self.assertTrue(all(s.session_id in ids for s in made))
            page1 = self.client.list_sessions(limit=2, offset=0)
            self.assertEqual((page1["limit"], page1["offset"], len(page1["sessions"])), (2, 0, 2))
            page2 = self.client.list_sessions(limit=2, offset=2)
            self.assertEqual(page2["offset"], 2)
            seen = [s.session_id for s in page1["sessions"] + page2["sessions"]]
            self.assertEqual(len(set(seen)), len(seen))
        finally:
            for session in made:
                self.client.delete_session(session.session_id)

    def test_07_invalid_ttl_raises_value_error(self):
        for ttl in (30, 50000):
            with self.assertRaises(ValueError):
                self.client.create_session(ttl=ttl)

    def test_08_invalid_list_parameters_raise_value_error(self):
        with self.assertRaises(ValueError):
            self.client.list_sessions(limit=150)
        with self.assertRaises(ValueError):
            self.client.list_sessions(offset=-1)

    def test_09_context_manager(self):
        with SessionsClient(api_url=self.api_url, bearer_token=self.token, timeout=60) as client:
            session = client.create_session()
            self.assertIsNotNone(session.session_id)
            client.delete_session(session.session_id)

    def test_10_to_dict(self):
        session = self.client.create_session(metadata={"test": "to_dict"})
        try:
            data = session.to_dict()
            self.assertIsInstance(data, dict)
            self.assertEqual(data["sessionId"], session.session_id)
            self.assertEqual(data["status"], session.status.value)
        finally:
            self.client.delete_session(session.session_id)

    def test_12_example_style_attributes(self):
        session = self.client.create_session(ttl=1800, metadata={"environment": "staging"})
        try:
            current = self.client.get_session(session.session_id)
            self.assertEqual(current.status.value, "running")
            left = (current.expires_at - datetime.now(current.expires_at.tzinfo)).total_seconds()
            self.assertTrue(1700 < left <= 1800, left)
            self.assertEqual(len(session.session_id[:8]), 8)
            self.assertEqual(current.metadata["environment"], "staging")
        finally:
            self.client.delete_session(session.session_id)
        try:
            self.client.get_session(session.session_id)
            self.fail("a deleted session was found")
        except SessionNotFoundError as e:
            self.assertTrue(e.message)

    def test_11_error_classes(self):
        with SessionsClient(api_url=self.api_url, bearer_token="not-a-jwt") as client:
            with self.assertRaises(UnauthorizedError):
                client.list_sessions()
        with SessionsClient(api_url="http://127.0.0.1:1/v1", bearer_token=self.token, timeout=5) as client:
            with self.assertRaises(SandboxConnectionError):
                client.list_sessions()
        self.assertTrue(issubclass(SandboxOperationError, SandboxAPIError))


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1)
