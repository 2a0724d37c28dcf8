#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

/* Not IN_MODIFY: a writer's intermediate states are not worth reading, the
 * close (or the rename into place) tells that it is done. IN_CREATE only
 * counts for symbolic links (a ConfigMap volume's new key), which get no
 * other event; a new regular file is read when it is closed. */
#define SP_DFILES_MASK                                                                             \
	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF |   \
	 IN_MOVE_SELF | IN_CREATE)

struct sp_dfile {
	char *path;
	/* The last content read, good or not, as length + hash: enough to
	 * skip a re-read that changed nothing, without keeping a copy. */
	bool read_once;
	size_t len;
	uint64_t hash;
	struct sp_dstore good; /* objects of the last good content */
	bool bad;	       /* the current content was rejected */
	bool seen;	       /* found by the current scan */
};

struct sp_dsrc {
	char *path;
	char *watch_dir; /* the directory itself, or a file's parent */
	bool is_dir;
	int wd;
	bool touched;
};

struct sp_dfiles {
	int ifd;
	struct sp_source_limits lim;
	struct sp_dsrc *srcs;
	size_t n_srcs;
	struct sp_dfile *files; /* sorted by path */
	size_t n_files, cap_files;
};

static void file_clear(struct sp_dfile *f)
{
	free(f->path);
	sp_dstore_free(&f->good);
}

int sp_dfiles_fd(const struct sp_dfiles *f)
{
	return f->ifd;
}

/* Watch (again) the source's directory. The same directory keeps its watch
 * descriptor; only a directory that was replaced gets a new one, and only
 * then is the old one dropped: removing a watch queues IN_IGNORED, which
 * must not look like a reason to watch again (that loop would spin). */
static void add_watch(struct sp_dfiles *f, struct sp_dsrc *s, struct sp_diag *diag)
{
	int wd = inotify_add_watch(f->ifd, s->watch_dir, SP_DFILES_MASK);

	if (wd < 0) {
		sp_diag_error(diag, "%s: cannot watch: %s", s->watch_dir, strerror(errno));
		return;
	}
	if (s->wd >= 0 && s->wd != wd) {
		bool shared = false;

		for (size_t i = 0; i < f->n_srcs; i++)
			shared |= &f->srcs[i] != s && f->srcs[i].wd == s->wd;
		if (!shared)
			inotify_rm_watch(f->ifd, s->wd);
	}
	s->wd = wd;
}

struct sp_dfiles *sp_dfiles_open(const char *const *paths, size_t n,
				 const struct sp_source_limits *lim, struct sp_diag *diag)
{
	struct sp_dfiles *f = sp_xcalloc(1, sizeof(*f));
	struct sp_dchanges ch = {0};
	size_t n_bad = 0;

	f->lim = *lim;
	f->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (f->ifd < 0) {
		sp_diag_error(diag, "inotify: %s", strerror(errno));
		free(f);
		return NULL;
	}
	f->srcs = sp_xcalloc(n + 1, sizeof(*f->srcs));
	for (size_t i = 0; i < n; i++) {
		struct sp_dsrc *s = &f->srcs[f->n_srcs++];
		struct stat st;

		s->path = sp_xstrdup(paths[i]);
		s->wd = -1;
		if (stat(paths[i], &st) < 0) {
			sp_diag_error(diag, "%s: %s", paths[i], strerror(errno));
			sp_dfiles_close(f);
			return NULL;
		}
		s->is_dir = S_ISDIR(st.st_mode);
		if (s->is_dir) {
			s->watch_dir = sp_xstrdup(paths[i]);
		} else {
			char *copy = sp_xstrdup(paths[i]);

			s->watch_dir = sp_xstrdup(dirname(copy));
			free(copy);
		}
		add_watch(f, s, diag);
		if (s->wd < 0) {
			sp_dfiles_close(f);
			return NULL;
		}
	}
	sp_dfiles_update(f, true, &ch, &n_bad, diag);
	return f;
}

void sp_dfiles_close(struct sp_dfiles *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n_srcs; i++) {
		free(f->srcs[i].path);
		free(f->srcs[i].watch_dir);
	}
	free(f->srcs);
	for (size_t i = 0; i < f->n_files; i++)
		file_clear(&f->files[i]);
	free(f->files);
	if (f->ifd >= 0)
		close(f->ifd);
	free(f);
}

static struct sp_dfile *file_get(struct sp_dfiles *f, const char *path)
{
	size_t at = 0;

	while (at < f->n_files && strcmp(f->files[at].path, path) < 0)
		at++;
	if (at < f->n_files && !strcmp(f->files[at].path, path))
		return &f->files[at];
	sp_array_push(&f->files, &f->n_files, &f->cap_files, sizeof(*f->files));
	memmove(&f->files[at + 1], &f->files[at], (f->n_files - 1 - at) * sizeof(*f->files));
	memset(&f->files[at], 0, sizeof(*f->files));
	f->files[at].path = sp_xstrdup(path);
	sp_dstore_init(&f->files[at].good, f->files[at].path, &f->lim);
	return &f->files[at];
}

/* Whole file, or NULL with *err set. */
static char *slurp(const char *path, size_t max, size_t *len, int *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	size_t got = 0;

	if (fd < 0) {
		*err = errno;
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
		*err = errno ? errno : EFBIG;
		if (!S_ISREG(st.st_mode))
			*err = EISDIR;
		close(fd);
		return NULL;
	}
	buf = sp_xmalloc((size_t)st.st_size + 1);
	for (;;) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*err = errno;
			free(buf);
			close(fd);
			return NULL;
		}
		got += (size_t)r;
		if (r == 0 || got == (size_t)st.st_size)
			break;
	}
	close(fd);
	buf[got] = '\0';
	*len = got;
	return buf;
}

/* FNV-1a, 64 bits. */
static uint64_t fnv1a(const char *data, size_t len)
{
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)data[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* Read one file; replace its objects when the new content is good. */
static bool reread(struct sp_dfiles *f, const char *path, struct sp_dchanges *ch, size_t *n_bad,
		   struct sp_diag *diag)
{
	struct sp_dfile *e = file_get(f, path);
	struct sp_dstore next;
	struct sp_cluster scratch;
	struct sp_diag check;
	size_t len = 0;
	int err = 0, r;
	uint64_t hash;
	char *text = slurp(path, f->lim.max_file_bytes, &len, &err);
	cJSON *doc;

	e->seen = true;
	if (!text) {
		if (err == ENOENT)
			e->seen = false; /* gone between the scan and the read */
		else
			sp_diag_error(diag, "%s: cannot read (%s); keeping its last good content",
				      path, strerror(err));
		return false;
	}
	hash = fnv1a(text, len);
	if (e->read_once && e->len == len && e->hash == hash) {
		free(text);
		return false;
	}
	e->read_once = true;
	e->len = len;
	e->hash = hash;
	doc = cJSON_ParseWithLength(text, len);
	free(text);
	if (!doc) {
		sp_diag_error(diag,
			      "%s: not valid JSON (half written?); keeping its last good content",
			      path);
		e->bad = true;
		(*n_bad)++;
		return false;
	}
	/* The reader decides what a rejected file is; objects it skips one by
	 * one are reported at sync time, as `svcproxy sync` does. */
	sp_cluster_init(&scratch);
	sp_diag_init(&check);
	r = sp_source_read_json(&scratch, path, doc, &f->lim, &check);
	sp_cluster_free(&scratch);
	if (r < 0) {
		for (size_t i = 0; i < check.n_msgs; i++)
			if (check.msgs[i].severity == SP_SEV_ERROR)
				sp_diag_error(diag, "%s; keeping its last good content",
					      check.msgs[i].text);
		sp_diag_free(&check);
		cJSON_Delete(doc);
		e->bad = true;
		(*n_bad)++;
		return false;
	}
	sp_diag_free(&check);
	sp_dstore_init(&next, e->path, &f->lim);
	sp_dstore_add_doc(&next, doc);
	cJSON_Delete(doc);
	e->bad = false;
	{
		struct sp_dchanges here = {0};

		sp_dstore_diff(&e->good, &next, &here);
		sp_dstore_swap(&e->good, &next);
		sp_dstore_free(&next);
		ch->services += here.services;
		ch->slices += here.slices;
		ch->nodes += here.nodes;
		return here.services || here.slices || here.nodes;
	}
}

/* path is dir/NAME (the files read from a directory are dir + "/" + name). */
static bool in_dir(const char *path, const char *dir)
{
	size_t len = strlen(dir);

	return !strncmp(path, dir, len) && path[len] == '/' && !strchr(path + len + 1, '/');
}

static bool wanted_name(const char *name)
{
	size_t len = strlen(name);

	/* Hidden files are editors' temporaries and ConfigMap's ..data. */
	return name[0] != '.' && len > 5 && !strcmp(name + len - 5, ".json");
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool scan_source(struct sp_dfiles *f, struct sp_dsrc *s, struct sp_dchanges *ch,
			size_t *n_bad, struct sp_diag *diag)
{
	bool changed = false;
	DIR *dir;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (!s->is_dir)
		return reread(f, s->path, ch, n_bad, diag);
	dir = opendir(s->path);
	if (!dir) {
		sp_diag_error(diag, "%s: %s; keeping its last good content", s->path,
			      strerror(errno));
		/* Keep every file of this directory in force. */
		for (size_t i = 0; i < f->n_files; i++)
			if (in_dir(f->files[i].path, s->path))
				f->files[i].seen = true;
		return false;
	}
	while ((de = readdir(dir)))
		if (wanted_name(de->d_name))
			*(char **)sp_array_push(&names, &n, &cap, sizeof(char *)) =
				sp_xasprintf("%s/%s", s->path, de->d_name);
	closedir(dir);
	qsort(names, n, sizeof(char *), cmp_str);
	for (size_t i = 0; i < n; i++) {
		struct stat st;

		if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
			changed |= reread(f, names[i], ch, n_bad, diag);
		free(names[i]);
	}
	free(names);
	return changed;
}

/* Files not seen by the scan of their source are gone: their objects go. */
static bool drop_unseen(struct sp_dfiles *f, struct sp_dchanges *ch)
{
	bool changed = false;
	size_t kept = 0;

	for (size_t i = 0; i < f->n_files; i++) {
		struct sp_dfile *e = &f->files[i];

		if (e->seen) {
			f->files[kept++] = *e;
			continue;
		}
		{
			struct sp_dstore empty;

			sp_dstore_init(&empty, NULL, NULL);
			sp_dstore_diff(&e->good, &empty, ch);
		}
		changed |= e->good.n > 0;
		file_clear(e);
	}
	f->n_files = kept;
	return changed;
}

static bool created_link(const char *dir, const struct inotify_event *ev)
{
	struct stat st;
	char *path;
	bool link;

	if (!ev->len)
		return false;
	path = sp_xasprintf("%s/%s", dir, ev->name);
	link = lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
	free(path);
	return link;
}

static void drain(struct sp_dfiles *f, bool *rewatch)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	for (;;) {
		ssize_t len = read(f->ifd, buf, sizeof(buf));

		if (len <= 0)
			return;
		for (char *p = buf; p < buf + len;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			bool current = false;

			for (size_t i = 0; i < f->n_srcs; i++) {
				if (f->srcs[i].wd != ev->wd)
					continue;
				current = true;
				if (!(ev->mask & IN_CREATE) ||
				    created_link(f->srcs[i].watch_dir, ev))
					f->srcs[i].touched = true;
			}
			/* The watched directory itself went away or moved:
			 * watch whatever is at its path now. */
			if ((current &&
			     (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED))) ||
			    (ev->mask & IN_Q_OVERFLOW))
				*rewatch = true;
			p += sizeof(*ev) + ev->len;
		}
	}
}

bool sp_dfiles_update(struct sp_dfiles *f, bool all, struct sp_dchanges *ch, size_t *n_bad,
		      struct sp_diag *diag)
{
	bool changed = false, rewatch = false;

	drain(f, &rewatch);
	if (rewatch)
		all = true;
	for (size_t i = 0; i < f->n_srcs; i++) {
		struct sp_dsrc *s = &f->srcs[i];

		if (all) {
			add_watch(f, s, diag);
			s->touched = true;
		}
	}
	for (size_t i = 0; i < f->n_files; i++) {
		struct sp_dfile *e = &f->files[i];
		bool untouched = true;

		/* Files of sources not rescanned stay as they are. */
		for (size_t j = 0; j < f->n_srcs; j++)
			if (f->srcs[j].touched &&
			    (!strcmp(e->path, f->srcs[j].path) ||
			     (f->srcs[j].is_dir && in_dir(e->path, f->srcs[j].path))))
				untouched = false;
		e->seen = untouched;
	}
	for (size_t i = 0; i < f->n_srcs; i++) {
		if (!f->srcs[i].touched)
			continue;
		f->srcs[i].touched = false;
		changed |= scan_source(f, &f->srcs[i], ch, n_bad, diag);
	}
	changed |= drop_unseen(f, ch);
	return changed;
}

int sp_dfiles_fill(const struct sp_dfiles *f, struct sp_cluster *c, struct sp_diag *diag)
{
	int worst = 0;

	for (size_t i = 0; i < f->n_files; i++) {
		int r = sp_dstore_fill(&f->files[i].good, c, diag);

		if (r < 0 || (r > worst && worst >= 0))
			worst = r;
	}
	return worst;
}
