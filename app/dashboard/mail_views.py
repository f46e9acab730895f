"""Development only: the mail outbox, so that invitation and reset links can be followed without a mail
server. Open to anyone (a forgotten password means no login), hence 404 outside development and test."""
import re

from flask import abort, render_template
from markupsafe import Markup, escape
from sqlalchemy import select

from app.accounts.mail import MailMessage
from app.dashboard import bp
from app.dashboard.helpers import dev_mail_enabled
from app.extensions import db

OUTBOX_PAGE_SIZE = 100
_URL = re.compile(r"https?://[^\s<>\"']+")


def linkify(text: str) -> Markup:
    """Plain mail text as HTML, its links clickable (everything else escaped)."""
    out, last = [], 0
    for match in _URL.finditer(text):
        out.append(escape(text[last:match.start()]))
        url = match.group(0)
        out.append(Markup('<a href="{0}">{0}</a>').format(url))
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


@bp.route("/dev/mail")
def dev_mail():
    if not dev_mail_enabled():
        abort(404)
    messages = db.session.scalars(
        select(MailMessage).order_by(MailMessage.created_at.desc(), MailMessage.id.desc()).limit(OUTBOX_PAGE_SIZE))
    return render_template("dashboard/dev_mail.html", messages=list(messages), linkify=linkify)


@bp.route("/dev/mail/<message_id>")
def dev_mail_message(message_id: str):
    if not dev_mail_enabled():
        abort(404)
    message = db.session.get(MailMessage, message_id)
    if message is None:
        abort(404)
    return render_template("dashboard/dev_mail_message.html", message=message, linkify=linkify)
