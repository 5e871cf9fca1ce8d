# Test receive / Test send, live (helper "livetest").
livetest-running = Testing… Each step appears here as soon as it finishes.
livetest-refresh = Refresh to see the steps finished since
livetest-deadline = The test was stopped after { $seconds } seconds: the server did not answer the next step in time. Check that the server reaches its own back end, then run the test again.
livetest-busy = You already have { $count } tests running. Wait until one of them ends, then start this one again.
livetest-gone = This test run is not kept (it is older than ten minutes, or it was started in another session). Run the test again from the account's page.
