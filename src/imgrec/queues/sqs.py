"""`SqsQueue`: AWS SQS (or an SQS-compatible endpoint), standard or FIFO.

URL ``sqs://<prefix>``: queue `name` is the SQS queue ``<prefix>-<name>`` and its
dead-letter queue ``<prefix>-<name>-dead`` (a redrive policy moves a message there
after `max_receives` receives). ``sqs://<prefix>?fifo=1`` uses FIFO queues (each
job its own message group, so they are processed in parallel). Endpoint and
credentials from the AWS chain (`AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`, ...).
Opened with ``create=True`` (as `imgrec init`, the web tier and workers do for the
request queue) it creates missing queues and uses existing ones as they are.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from urllib.parse import parse_qs, urlparse

from imgrec.errors import BackendError, BackendUnavailable, QueueMissing, aws_error, require, translating
from imgrec.queues.base import Message, Queue, QueueStats

_MAX_LONG_POLL = 20  # seconds: SQS's limit for WaitTimeSeconds
_MAX_BATCH = 10  # SQS's limit for MaxNumberOfMessages
_guard = translating(lambda exc: aws_error(exc, "SQS queue"))


def _raise_if_transient(exc: Exception) -> None:
    if isinstance(error := aws_error(exc, "SQS queue"), BackendUnavailable):
        raise error from exc


class SqsQueue(Queue):
    @_guard
    def __init__(self, url: str, name: str, *, create: bool = False, client=None, **options) -> None:
        super().__init__(name, **options)
        boto3 = require("boto3", "aws", "the SQS queue")
        from botocore.config import Config

        parsed = urlparse(url)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        prefix = parsed.netloc or "imgrec"
        self.fifo = query.get("fifo", "0").lower() in ("1", "true", "yes")
        suffix = ".fifo" if self.fifo else ""
        self.sqs_name = f"{prefix}-{name}{suffix}"
        self.dead_name = f"{prefix}-{name}-dead{suffix}"
        # Each call bounded, so that an SQS that stalls is an outage within about `timeout`
        # seconds (half for the connection and each answer, one retry), never a hang; a
        # receive's client waits for its long poll besides.
        def client_for(longest_wait: float):
            return boto3.client("sqs", config=Config(
                retries={"mode": "standard", "total_max_attempts": 2},
                connect_timeout=self.timeout / 2, read_timeout=self.timeout / 2 + longest_wait,
            ))

        self._sqs = client or client_for(0.0)
        self._receiving = client or client_for(_MAX_LONG_POLL)
        self._errors = self._sqs.exceptions
        if create:
            self.create()
        try:
            self._url = self._sqs.get_queue_url(QueueName=self.sqs_name)["QueueUrl"]
            self._dead_url = self._sqs.get_queue_url(QueueName=self.dead_name)["QueueUrl"]
        except self._errors.QueueDoesNotExist:
            raise QueueMissing(f"SQS queue {self.sqs_name} does not exist; create it with: imgrec init") from None

    def durable(self) -> bool:
        return True  # SQS stores a message redundantly before SendMessage returns

    @_guard
    def create(self) -> None:
        """Create the queue and its dead-letter queue; existing ones are used as they are."""
        try:
            self._create()
        except (self._errors.QueueNameExists, self._errors.ClientError) as exc:
            # Exists with other attributes, or we may not create queues: use what is there.
            if self._exists():
                return
            raise BackendError(f"cannot create SQS queue {self.sqs_name}: {exc}") from exc

    def _exists(self) -> bool:
        try:
            self._sqs.get_queue_url(QueueName=self.sqs_name)
            return True
        except self._errors.QueueDoesNotExist:
            return False

    def _create(self) -> None:
        fifo = {"FifoQueue": "true"} if self.fifo else {}
        dead_url = self._sqs.create_queue(QueueName=self.dead_name, Attributes={**fifo})["QueueUrl"]
        dead_arn = self._sqs.get_queue_attributes(QueueUrl=dead_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(self.max_receives)})
        self._sqs.create_queue(
            QueueName=self.sqs_name,
            Attributes={
                **fifo,
                "VisibilityTimeout": str(math.ceil(self.visibility_timeout)),
                "RedrivePolicy": redrive,
            },
        )

    def _fifo(self, body: dict, text: str) -> dict:
        """Each job is its own group (parallel); deduplication by content, so that a request
        sent again on purpose (with its counters changed) is not dropped as a duplicate."""
        if not self.fifo:
            return {}
        group = str(body.get("job_id") or uuid.uuid4().hex)
        return {"MessageGroupId": group, "MessageDeduplicationId": hashlib.sha256(text.encode()).hexdigest()}

    @_guard
    def send(self, body: dict) -> str:
        text = json.dumps(body)
        return self._sqs.send_message(QueueUrl=self._url, MessageBody=text, **self._fifo(body, text))["MessageId"]

    @_guard
    def send_many(self, bodies: list[dict]) -> list[str]:
        ids = []
        for start in range(0, len(bodies), _MAX_BATCH):
            entries = []
            for i, body in enumerate(bodies[start : start + _MAX_BATCH]):
                text = json.dumps(body)
                entries.append({"Id": str(i), "MessageBody": text, **self._fifo(body, text)})
            response = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
            if response.get("Failed"):
                raise BackendError(f"SQS refused {len(response['Failed'])} messages: {response['Failed'][0]}")
            ids += [e["MessageId"] for e in sorted(response["Successful"], key=lambda e: int(e["Id"]))]
        return ids

    @_guard
    def ack_many(self, messages: list[Message]) -> None:
        for start in range(0, len(messages), _MAX_BATCH):
            chunk = messages[start : start + _MAX_BATCH]
            entries = [{"Id": str(i), "ReceiptHandle": m.receipt} for i, m in enumerate(chunk)]
            response = self._sqs.delete_message_batch(QueueUrl=self._url, Entries=entries)
            for failed in response.get("Failed", []):  # e.g. a dead-letter receipt: the slow way
                self.ack(chunk[int(failed["Id"])])

    def _receive(self, url: str, max_messages: int, wait: float) -> list[Message]:
        response = self._receiving.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(_MAX_BATCH, max_messages)),
            # Whole seconds only: a wait under half a second is a short poll, not a 1 s one.
            WaitTimeSeconds=int(min(wait, _MAX_LONG_POLL) + 0.5),
            VisibilityTimeout=math.ceil(self.visibility_timeout),
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            Message(
                m["MessageId"], json.loads(m["Body"]), m["ReceiptHandle"],
                int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
            )
            for m in response.get("Messages", [])
        ]

    @_guard
    def receive(self, max_messages: int = 1, wait: float = 0.0) -> list[Message]:
        deadline = time.monotonic() + wait
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            messages = self._receive(self._url, max_messages, remaining)
            # SQS returns at most 10 at once: take what else is already waiting.
            while messages and len(messages) < max_messages:
                more = self._receive(self._url, max_messages - len(messages), 0)
                if not more:
                    break
                messages += more
            if messages or time.monotonic() >= deadline:
                return messages
            if remaining < 0.5:
                # That was a short poll (SQS waits in whole seconds): rather than poll again
                # in a tight loop, let the rest of this sub-second wait pass.
                time.sleep(max(0.0, deadline - time.monotonic()))
                return []

    @_guard
    def ack(self, message: Message) -> bool:
        for url in (self._url, self._dead_url):
            try:
                self._sqs.delete_message(QueueUrl=url, ReceiptHandle=message.receipt)
                return True
            except self._errors.ClientError as exc:
                _raise_if_transient(exc)  # else: a receipt of the other queue, or a stale one
        return False

    @_guard
    def extend(self, message: Message, seconds: float) -> bool:
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self._url, ReceiptHandle=message.receipt, VisibilityTimeout=math.ceil(seconds)
            )
            return True
        except self._errors.ClientError as exc:
            _raise_if_transient(exc)
            return False  # not in flight any more, or a stale receipt

    def _counts(self, url: str) -> tuple[int, int]:
        try:
            attrs = self._sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        except self._errors.QueueDoesNotExist:  # deleted
            return 0, 0
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    @_guard
    def stats(self) -> QueueStats:
        depth, in_flight = self._counts(self._url)
        dead, dead_in_flight = self._counts(self._dead_url)
        # SQS keeps no time of the last send (CloudWatch's count lags by minutes): last_sent None.
        return QueueStats(depth, in_flight, dead + dead_in_flight)

    @_guard
    def receive_dead(self, max_messages: int = 10) -> list[Message]:
        return self._receive(self._dead_url, max_messages, 0)

    @_guard
    def delete(self) -> None:
        for url in (self._url, self._dead_url):
            try:
                self._sqs.delete_queue(QueueUrl=url)
            except self._errors.QueueDoesNotExist:
                pass
