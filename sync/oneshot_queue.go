package sync

import (
	"context"
	gosync "sync"
)

// xferQueue runs the transfers and deletions of a one-shot run on a fixed
// number of workers, in the order they were queued. (A goroutine per file
// waiting for its turn cost, for a tree of small files, a new stack grown
// through the FTP client's calls and a hand-off between goroutines per
// file.) Queuing never blocks, so the walk keeps listing ahead.
type xferQueue struct {
	ctx     context.Context // read only; once it ends, queued work is dropped
	mu      gosync.Mutex    // protects the following
	cond    *gosync.Cond    // signalled when work arrives or the queue closes
	jobs    []xferJob
	closed  bool
	workers gosync.WaitGroup
}

type xferJob struct {
	wg *gosync.WaitGroup // Done when the job ran or was dropped
	fn func()
}

func newXferQueue(ctx context.Context, workers int) *xferQueue {
	q := &xferQueue{ctx: ctx}
	q.cond = gosync.NewCond(&q.mu)
	for range max(workers, 1) {
		q.workers.Add(1)
		go q.work()
	}
	return q
}

// add queues fn; wg.Done is called once it ran or was dropped.
func (q *xferQueue) add(wg *gosync.WaitGroup, fn func()) {
	wg.Add(1)
	q.mu.Lock()
	q.jobs = append(q.jobs, xferJob{wg: wg, fn: fn})
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *xferQueue) work() {
	defer q.workers.Done()
	for {
		q.mu.Lock()
		for len(q.jobs) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.jobs) == 0 {
			q.mu.Unlock()
			return
		}
		j := q.jobs[0]
		q.jobs[0] = xferJob{}
		q.jobs = q.jobs[1:]
		q.mu.Unlock()
		if q.ctx.Err() == nil {
			j.fn()
		}
		j.wg.Done()
	}
}

// close lets the workers finish what is queued and waits for them.
func (q *xferQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
	q.workers.Wait()
}
