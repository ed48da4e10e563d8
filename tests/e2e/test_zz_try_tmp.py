import tests.e2e.test_alert_loop as m
from tests.e2e.test_alert_loop import stack, test_every_target_is_scraped, test_watchdog_reaches_its_receiver, PAGE_SUBJECT, RESOLVED_SUBJECT

m.server_overrides = lambda wd, secrets: {"batching": {"max_queue_size": 2, "max_batch_size": 4}}

def test_overload_pages_and_resolves(stack):
    import time
    stack.drill({"name": "surge", "duration_s": 25, "surge_factor": 12})
    mail = stack.eventually("page", lambda: [x for x in stack.mails() if PAGE_SUBJECT.match(x["subject"])], timeout=90)[0]
    print(mail["subject"]); print(mail["text"][:1500])
    sl = stack.eventually("slack", lambda: [s for s in stack.slack() if s["payload"].get("channel") == "#ml-oncall"], timeout=30)[0]
    print(sl["payload"]["attachments"][0]["title"]); print(sl["payload"]["attachments"][0]["text"][:800])
    t=time.time()
    stack.eventually("resolved", lambda: [x for x in stack.mails() if x["subject"] == RESOLVED_SUBJECT], timeout=150)
    print("resolved after", time.time()-t)
    print([x["subject"] for x in stack.mails()])
