package tds

// workerSettings holds the options read by NewWorker.
type workerSettings struct{}
