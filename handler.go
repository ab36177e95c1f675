package tds

// handlerSettings holds the options read by NewHandler.
type handlerSettings struct{}
